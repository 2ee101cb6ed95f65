//! An object's bindings: the config's vars and secrets, the namespaces of
//! the node, their ids, and stubs to call other objects by fetch or by
//! named RPC.
//!
//! A call runs under the callee's serial execution, like any other event.
//! Torpor does not re-enter an object: a call into an object whose handler
//! is already waiting further up the same call chain (A calls B calls A)
//! fails at once with [`Error::CallCycle`] instead of waiting for itself.

use crate::host::Host;
use crate::{Error, Request, Response, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::rc::Rc;

/// Handed to [`DurableObject::new`](crate::DurableObject::new).
#[derive(Clone)]
pub struct Env {
    host: Rc<dyn Host>,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env").finish_non_exhaustive()
    }
}

impl Env {
    #[doc(hidden)]
    pub fn new(host: Rc<dyn Host>) -> Env {
        Env { host }
    }

    /// A plain value of the config's `[vars]`, as Durable Objects'
    /// `env.NAME` for a var.
    pub fn var(&self, name: &str) -> Result<String> {
        self.host.var(name).ok_or_else(|| Error::UnknownBinding {
            kind: "var",
            name: name.to_owned(),
        })
    }

    /// A secret of the config's `[secrets]`, read from the environment
    /// when the node started (or was last reloaded). Keep it out of logs.
    pub fn secret(&self, name: &str) -> Result<String> {
        self.host.secret(name).ok_or_else(|| Error::UnknownBinding {
            kind: "secret",
            name: name.to_owned(),
        })
    }

    /// A namespace of the node by its configured name, e.g. `ROOMS`.
    pub fn namespace(&self, name: &str) -> Result<Namespace> {
        if !self.host.has_namespace(name) {
            return Err(Error::UnknownNamespace(name.to_owned()));
        }
        Ok(Namespace {
            host: self.host.clone(),
            name: name.to_owned(),
        })
    }
}

/// A namespace: ids and stubs of its objects.
#[derive(Clone)]
pub struct Namespace {
    host: Rc<dyn Host>,
    name: String,
}

impl Namespace {
    /// The id of `name`: the same on every node start and in every process.
    pub fn id_from_name(&self, name: &str) -> Result<ObjectId> {
        Ok(ObjectId {
            hex: self.host.id_from_name(&self.name, name)?,
            name: Some(name.to_owned()),
        })
    }

    /// A new, random id.
    pub fn new_unique_id(&self) -> Result<ObjectId> {
        Ok(ObjectId {
            hex: self.host.new_unique_id(&self.name)?,
            name: None,
        })
    }

    /// An id from its 64-hex form; an id of another namespace, or a typo,
    /// is [`Error::InvalidId`], never a new object.
    pub fn id_from_string(&self, text: &str) -> Result<ObjectId> {
        Ok(ObjectId {
            hex: self.host.id_from_string(&self.name, text)?,
            name: None,
        })
    }

    /// A stub to call the object `id`.
    pub fn get(&self, id: &ObjectId) -> Stub {
        Stub {
            host: self.host.clone(),
            namespace: self.name.clone(),
            id: id.clone(),
        }
    }
}

/// An object id: 64 hex characters, with the name it came from if any.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectId {
    hex: String,
    name: Option<String>,
}

impl ObjectId {
    /// The name the id was derived from, if it was.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex)
    }
}

/// Calls one object.
#[derive(Clone)]
pub struct Stub {
    host: Rc<dyn Host>,
    namespace: String,
    id: ObjectId,
}

impl Stub {
    /// Sends an HTTP request to the object's `fetch` and returns its
    /// response, whatever the status: a 4xx or 5xx the callee answered (or
    /// the runtime answered for it, such as 500 when its handler failed)
    /// is a `Response`, as with Durable Objects' `stub.fetch`. An error
    /// means the call could not be made: [`Error::Call`] with status 503
    /// when no edge could carry it or the edge went away, or
    /// [`Error::CallCycle`].
    pub async fn fetch(&self, request: Request) -> Result<Response> {
        let name = self.id.name.as_deref();
        self.host
            .call(&self.namespace, &self.id.hex, name, None, request)
            .await
    }

    /// Calls the object's [`rpc`](crate::DurableObject::rpc) handler with
    /// `method` and `args` (as JSON) and returns its result. A method that
    /// fails is [`Error::Call`] with the status (500 for a handler error)
    /// and the error's text.
    pub async fn call<A, R>(&self, method: &str, args: &A) -> Result<R>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let request = Request::new("POST", "/").with_body(serde_json::to_vec(args)?);
        let name = self.id.name.as_deref();
        let response = self
            .host
            .call(&self.namespace, &self.id.hex, name, Some(method), request)
            .await?;
        Ok(serde_json::from_slice(&response.body)?)
    }
}
