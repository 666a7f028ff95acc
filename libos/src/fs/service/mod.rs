//! A file system shared over protected control transfer, in three parts: the wire format
//! both sides share ([`protocol`]), the server's side ([`server`]: [`Server`], run by the
//! `fsd` program) and the client's ([`client`]: [`RemoteFs`], a
//! [`FileSystem`](super::FileSystem) like any other, so an app mounts it in its `Vfs` and
//! cannot tell the difference).
//!
//! Each call carries an operation and up to three numbers in registers, and grants the
//! server the client's one-page buffer read-write: paths, directory listings and file data
//! travel there (at most one page per call). Replies are a status (0, or an
//! [`Error`](super::Error) code) and up to three numbers. The server owns the file systems;
//! clients only ever see handles the server gave *them* — a handle is checked against its
//! caller.

pub mod client;
pub mod protocol;
pub mod server;

pub use client::{mount_remote, RemoteFs};
pub use protocol::{op, BUF};
pub use server::Server;
