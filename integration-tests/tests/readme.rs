//! The README's walk-through, run as written: its shell blocks, line by line, against the
//! real binary in local mode (the `serve` line starts it; `cargo run --release ... --` is
//! the binary this test process was built with), in a scratch directory that holds the
//! repository's `models/`. Every command must succeed, except those the README marks
//! `# refused`, which must fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use coachflow_integration_tests::server::binary;
use coachflow_store::testing::TempDirGuard;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The commands of the walk-through's `sh` blocks, continuation lines joined, comment
/// lines left out; a command keeps its trailing comment.
fn walk_through() -> Vec<String> {
    let readme = std::fs::read_to_string(repository().join("README.md")).expect("README.md");
    let start = readme.find("## A walk-through").expect("a walk-through section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |end| end + 3)];
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in section.lines() {
        if line.trim_start().starts_with("```") {
            in_block = line.trim() == "```sh";
            continue;
        }
        if !in_block || line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(line.trim());
                commands.push(std::mem::take(&mut pending));
            }
        }
    }
    commands
}

/// Starts `coachflow serve` as the README does, in `directory`; its gRPC address.
fn serve(directory: &Path) -> (std::process::Child, String) {
    let mut child = Command::new(binary())
        .env("NO_COLOR", "1")
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", ""])
        .current_dir(directory)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("coachflow serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.next().expect("a ready line").expect("the ready line is text");
    let grpc = ready
        .split(' ')
        .find_map(|field| field.strip_prefix("grpc="))
        .unwrap_or_else(|| panic!("no grpc= in {ready}"))
        .to_owned();
    (child, grpc)
}

#[test]
fn the_walk_through_runs_as_written() {
    let commands = walk_through();
    assert!(commands.len() >= 8, "{commands:?}");
    assert_eq!(
        commands[0], "cargo run --release -- serve",
        "the walk-through starts the service"
    );
    let scratch = TempDirGuard::new();
    std::os::unix::fs::symlink(repository().join("models"), scratch.path().join("models")).expect("models/");
    let (mut server, grpc) = serve(scratch.path());

    // One script, so that aliases and exports carry over; after each command its status.
    let bin = binary().display().to_string();
    let mut script = String::from("shopt -s expand_aliases\n");
    for (index, command) in commands.iter().enumerate().skip(1) {
        let line = command
            .replace("cargo run --release -q --", &format!("'{bin}'"))
            .replace("cargo run --release --", &format!("'{bin}'"));
        let line = if line.starts_with("cf watch") {
            // It streams until interrupted: a moment of it.
            let head = line.split('#').next().unwrap_or_default().trim().to_owned();
            format!("{head} & sleep 2; kill $!")
        } else {
            line
        };
        script.push_str(&format!(
            "echo '@@command {index}'\n{{ {line}\n}} 2>&1\necho \"@@status $?\"\n"
        ));
    }
    let mut command = Command::new("bash");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("COACHFLOW_") {
            command.env_remove(name);
        }
    }
    let output = command
        .arg("-c")
        .arg(&script)
        .env("COACHFLOW_SERVER", format!("http://{grpc}"))
        .current_dir(scratch.path())
        .output()
        .expect("bash runs");
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut outputs: Vec<(usize, String, i32)> = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for line in stdout.lines() {
        if let Some(index) = line.strip_prefix("@@command ") {
            current = Some((index.parse().unwrap(), String::new()));
        } else if let Some(status) = line.strip_prefix("@@status ") {
            let (index, text) = current.take().expect("a command before its status");
            outputs.push((index, text, status.parse().unwrap()));
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    assert_eq!(outputs.len(), commands.len() - 1, "every command ran:\n{stdout}");
    for (index, text, status) in &outputs {
        let command = &commands[*index];
        let refused = command.contains("# refused");
        assert_eq!(
            *status != 0,
            refused,
            "`{command}` exited {status}{}:\n{text}",
            if refused {
                ", but the README says it is refused"
            } else {
                ""
            }
        );
    }
    let output_of = |fragment: &str| -> &str {
        outputs
            .iter()
            .find(|(index, _, _)| commands[*index].contains(fragment))
            .map(|(_, text, _)| text.as_str())
            .unwrap_or_else(|| panic!("no command with {fragment}"))
    };
    assert!(
        output_of("cf publish").contains("published tenants/acme/models/four-stage version 1"),
        "{}",
        output_of("cf publish")
    );
    assert!(output_of("cf start").contains("ACTIVE"));
    let admin_history = output_of("cf history eng-1");
    assert!(admin_history.contains("Struggles to delegate"), "{admin_history}");
    let sponsor_history = output_of("--token \"$SPONSOR\" history");
    assert!(
        sponsor_history.contains("withheld: outputs.background"),
        "{sponsor_history}"
    );
    assert!(!sponsor_history.contains("Struggles to delegate"), "{sponsor_history}");
    assert!(sponsor_history.contains("task_completed"), "{sponsor_history}");
    let refused = output_of("--token \"$SPONSOR\" complete");
    assert!(refused.contains("PermissionDenied (NOT_THE_ASSIGNEE)"), "{refused}");
}
