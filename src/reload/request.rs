//! What asks for a reload (a file change, SIGHUP, `POST /-/reload`) and where its result
//! goes: shared by the watcher, the server and the reloader.

use tokio::sync::oneshot;

use crate::scheduler::Changes;

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The config or a file it names changed (or the periodic check). The files are read, and
    /// applied only if some content differs from the last read.
    File,
    /// SIGHUP: always rebuilds.
    Signal,
    /// `POST /-/reload`: always rebuilds, like SIGHUP.
    Api,
    /// An `http_sd` source's server answered with another list: always rebuilds.
    Source,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::File => "file change",
            Trigger::Signal => "SIGHUP",
            Trigger::Api => "POST /-/reload",
            Trigger::Source => "target source",
        }
    }
}

/// A reload to perform, and where to send its result (`POST /-/reload` waits for it).
#[derive(Debug)]
pub struct Request {
    pub trigger: Trigger,
    pub reply: Option<oneshot::Sender<Result<Reloaded, String>>>,
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// A file event, but the content is the one last read (or the file is empty, as while an
    /// editor saves it): nothing to do, nothing counted.
    Unchanged,
    Applied(Changes),
}
