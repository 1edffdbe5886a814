//! Unpacked layers keyed by ChainID, each a directory usable as an overlayfs lower dir.
