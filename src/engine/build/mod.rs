//! Building images from Dockerfiles, inside the engine (as dockerd's classic builder does), so that
//! `docker build` through berth's socket and `berth build` share one implementation.
//!
//! The pipeline, stage by stage:
//! 1. `POST /build` receives the context as a tar (the CLI has already applied `.dockerignore`
//!    with [`ignore`], the same rules `watch` uses) and the query parameters of the classic builder.
//! 2. [`dockerfile`] parses the Dockerfile into stages of typed instructions, each with its line,
//!    and decides which stages the target needs and in which order; it also owns Docker's word
//!    substitution, which the executor applies per step with the variables then in scope.
//! 3. The executor walks those stages. Each stage's state is an image record: FROM resolves
//!    `scratch`, an earlier stage or a stored (or pulled) image; a metadata instruction makes a new
//!    config with an empty-layer history entry; RUN runs in a berth container and COPY/ADD copy into
//!    a fresh overlay upper directory, and [`layer`] makes that upper directory an OCI layer.
//! 4. A cache keyed by parent image, normalised instruction, build args in scope and the content
//!    hash of COPY/ADD sources maps a step to the image it made, so unchanged steps are reused.
//! 5. Progress goes back as Docker's JSON message stream, with a `berth` field the berth CLI renders
//!    in BuildKit's plain style.

pub mod cache;
pub mod context;
pub mod copy;
pub mod dockerfile;
pub mod executor;
pub mod ignore;
pub mod metadata;
pub mod progress;
pub mod prune;
pub mod run_step;
pub mod session;
pub mod stage;
