//! The command template: every `{}` in the program or its arguments becomes the task; with
//! no `{}` anywhere, the task is appended as the last argument. No shell is involved, so a
//! task is always data, never code.

/// A command with `{}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    argv: Vec<String>,
    has_placeholder: bool,
}

impl Template {
    /// A template from the words after `--` (at least one: the program).
    pub fn new(argv: Vec<String>) -> Option<Template> {
        if argv.is_empty() {
            return None;
        }
        let has_placeholder = argv.iter().any(|a| a.contains("{}"));
        Some(Template {
            argv,
            has_placeholder,
        })
    }

    /// The program as written (before substitution).
    pub fn program(&self) -> &str {
        &self.argv[0]
    }

    /// The program and arguments for one task.
    pub fn render(&self, task: &str) -> Vec<String> {
        if !self.has_placeholder {
            let mut argv = self.argv.clone();
            argv.push(task.to_string());
            return argv;
        }
        self.argv.iter().map(|a| a.replace("{}", task)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(words: &[&str]) -> Template {
        Template::new(words.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn replaces_every_placeholder_in_every_word() {
        assert_eq!(
            t(&["run-{}", "--name={}", "x", "{}{}"]).render("a b"),
            vec!["run-a b", "--name=a b", "x", "a ba b"]
        );
    }

    #[test]
    fn appends_the_task_without_placeholder() {
        assert_eq!(
            t(&["pytest", "-q"]).render("t.py::x"),
            vec!["pytest", "-q", "t.py::x"]
        );
    }

    #[test]
    fn a_task_stays_one_argument_whatever_it_contains() {
        let task = "x'; rm -rf / #\" $(echo) {}";
        assert_eq!(t(&["echo", "{}"]).render(task), vec!["echo", task]);
    }

    #[test]
    fn needs_a_program() {
        assert!(Template::new(vec![]).is_none());
    }
}
