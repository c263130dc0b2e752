//! `sweep completions SHELL`: a script each shell accepts, naming every subcommand.

use crate::common::{text, Env};

#[test]
fn completion_scripts_name_every_subcommand_for_each_shell() {
    let env = Env::new(1);
    for (shell, marker) in [
        ("bash", "complete -F _sweep"),
        ("zsh", "#compdef sweep"),
        ("fish", "complete -c sweep"),
    ] {
        let o = env.run(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", text(&o));
        let script = String::from_utf8(o.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {script}");
        for sub in [
            "plan", "run", "resume", "status", "report", "serve", "submit",
        ] {
            assert!(script.contains(sub), "{shell} script lacks `{sub}`");
        }
    }
    let o = env.run(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "an unknown shell is bad input");
    assert!(text(&o).contains("possible values"), "{}", text(&o));
}
