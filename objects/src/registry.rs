//! Object classes a worker can instantiate, by name.

use crate::instance::DynObject;
use std::collections::HashMap;
use torpor_sdk::{DurableObject, Env, State};

pub(crate) type Factory = fn(State, Env) -> Box<dyn DynObject>;

/// Object classes by the name routes use.
#[derive(Default)]
pub struct Registry {
    classes: HashMap<String, Factory>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers `T` under `class`.
    pub fn with<T: DurableObject>(mut self, class: &str) -> Registry {
        self.classes.insert(class.to_owned(), |state, env| {
            Box::new(T::new(state, env)) as Box<dyn DynObject>
        });
        self
    }

    /// Whether a class is registered under `class`.
    pub fn contains(&self, class: &str) -> bool {
        self.classes.contains_key(class)
    }

    /// The names of the registered classes, in no particular order.
    pub fn classes(&self) -> impl Iterator<Item = &str> {
        self.classes.keys().map(String::as_str)
    }

    pub(crate) fn factory(&self, class: &str) -> Option<Factory> {
        self.classes.get(class).copied()
    }
}
