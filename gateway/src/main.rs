//! `torpor`: a node with the built-in classes. A binary of your own with
//! your classes is the same three lines (see the README).

fn main() -> std::process::ExitCode {
    torpor::Node::new().builtin_classes().main()
}
