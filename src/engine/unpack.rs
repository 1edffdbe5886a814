//! Layer extraction on fd-relative primitives: whiteouts become overlay whiteouts, nothing is ever
//! written outside the snapshot root.
