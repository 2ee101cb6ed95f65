//! Object classes a worker can instantiate, by name.

use crate::instance::DynObject;
use std::collections::HashMap;
use std::rc::Rc;
use torpor_sdk::{DurableObject, Env, State};

/// Makes an instance. A closure, not a `fn`, since a JavaScript class
/// carries the app it was loaded from.
pub(crate) type Factory = Rc<dyn Fn(State, Env) -> Box<dyn DynObject>>;

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
        self.classes.insert(
            class.to_owned(),
            Rc::new(|state, env| Box::new(T::new(state, env)) as Box<dyn DynObject>),
        );
        self
    }

    /// Registers (or replaces) `class` with a factory of the runtime's own.
    pub(crate) fn insert_factory(&mut self, class: &str, factory: Factory) {
        self.classes.insert(class.to_owned(), factory);
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
        self.classes.get(class).cloned()
    }
}
