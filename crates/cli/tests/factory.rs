//! `labelgan factory` end to end with a tiny random generator and toyworld labels: a
//! run killed (SIGKILL) or stopped (SIGINT, SIGTERM) in the middle and restarted ends
//! byte-identical to an uninterrupted run (class-prior calibration included), a rerun
//! with other settings is refused until --restart, and mistakes fail with messages that
//! name them.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use labelgan_dataset::folder_contents;

/// The two folders hold the same files with the same bytes (names any that differ).
fn same_files(a: &Path, b: &Path) {
    let (fa, fb) = (folder_contents(a).unwrap(), folder_contents(b).unwrap());
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let (na, nb) = (names(&fa), names(&fb));
    let only_a: Vec<_> = na.iter().filter(|n| !nb.contains(n)).collect();
    let only_b: Vec<_> = nb.iter().filter(|n| !na.contains(n)).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "only in {}: {only_a:?}; only in {}: {only_b:?}",
        a.display(),
        b.display()
    );
    let differ: Vec<&String> = fa
        .iter()
        .zip(&fb)
        .filter(|(x, y)| x.1 != y.1)
        .map(|(x, _)| &x.0)
        .collect();
    assert!(differ.is_empty(), "files differ: {differ:?}");
}

#[test]
fn killed_and_restarted_equals_uninterrupted() {
    let t = |n: &str| common::tmp_in("factory", n);
    let gp = t("g.safetensors");
    common::tiny_generator(&gp);
    let data = t("labelled");
    labelgan_toyworld::write_dataset(&data, 1, 4, 32, |_, _| {}).unwrap();
    let args = |out: &Path| -> Vec<String> {
        [
            "factory",
            "--generator",
            gp.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--count",
            "150",
            "--block",
            "10",
            "--filter",
            "0.2",
            "--members",
            "2",
            "--pixels-per-image",
            "300",
            "--max-epochs",
            "2",
            "--seed",
            "4",
        ]
        .map(String::from)
        .to_vec()
    };
    let (a, b) = (t("a"), t("b"));
    let o = common::labelgan(&args(&a).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let last = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    let j: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(j["images"], 150);

    // Kill the second run once some images are on disk, then run it again.
    let mut child = Command::new(env!("CARGO_BIN_EXE_labelgan"))
        .args(args(&b))
        .spawn()
        .unwrap();
    let manifest = b.join("manifest.jsonl");
    let start = Instant::now();
    let mut killed = false;
    while start.elapsed() < Duration::from_secs(120) {
        let lines = std::fs::read(&manifest)
            .map(|v| v.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0);
        if lines >= 20 {
            killed = child.try_wait().unwrap().is_none();
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.wait();
    assert!(killed, "the run finished before it could be killed");
    let partial = std::fs::read(&manifest)
        .unwrap()
        .iter()
        .filter(|&&c| c == b'\n')
        .count();
    assert!(partial < 150, "{partial}");
    let o = common::labelgan(&args(&b).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("fitted earlier"), "{err}");
    // The restart labels with the same calibrated labeler, read back, not measured again.
    assert!(err.contains("calibration made earlier"), "{err}");
    assert!(b.join("labelers/segmentation_calibration.json").exists());
    same_files(&a, &b);

    // SIGINT and SIGTERM: the image at hand is finished, the run exits 130 with one
    // line saying how to resume, and the resumed run ends byte-identical.
    for (signal, name) in [("-INT", "c_int"), ("-TERM", "c_term")] {
        let c = t(name);
        let child = Command::new(env!("CARGO_BIN_EXE_labelgan"))
            .args(args(&c))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let manifest = c.join("manifest.jsonl");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(120) {
            let lines = std::fs::read(&manifest)
                .map(|v| v.iter().filter(|&&x| x == b'\n').count())
                .unwrap_or(0);
            if lines >= 20 {
                Command::new("kill")
                    .args([signal, &child.id().to_string()])
                    .status()
                    .unwrap();
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(130), "{signal}: {err}");
        let last = err.lines().last().unwrap_or("");
        assert!(
            last.starts_with("error: stopped:") && last.contains("rerun the same command"),
            "{err}"
        );
        let partial = std::fs::read(&manifest)
            .unwrap()
            .iter()
            .filter(|&&x| x == b'\n')
            .count();
        assert!((20..150).contains(&partial), "{signal}: {partial} images");
        let o = common::labelgan(&args(&c).iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        same_files(&a, &c);
    }

    // A resume with another seed is refused before anything is written, naming the
    // setting and both values; --restart starts over.
    let mut other = args(&b);
    *other.last_mut().unwrap() = "5".into();
    let before = folder_contents(&b).unwrap();
    let o = common::labelgan(&other.iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1) && err.contains("seed = 4, this run has 5") && err.contains("--restart"),
        "{err}"
    );
    assert_eq!(folder_contents(&b).unwrap(), before);
    let count = other.iter().position(|x| x == "--count").unwrap() + 1;
    other[count] = "3".into();
    other.push("--restart".into());
    let o = common::labelgan(&other.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = std::fs::read(b.join("manifest.jsonl"))
        .unwrap()
        .iter()
        .filter(|&&x| x == b'\n')
        .count();
    assert_eq!(lines, 3);

    // Mistakes.
    let o = common::labelgan(&[
        "factory",
        "--generator",
        gp.to_str().unwrap(),
        "--data",
        "/no/such",
        "--out",
        "x",
    ]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("/no/such"));
    let o = common::labelgan(&[
        "factory",
        "--generator",
        gp.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        t("c").to_str().unwrap(),
        "--method",
        "datasetgan",
    ]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--latents"));
    // Writing into the labelled set is refused before anything is written there.
    let before = folder_contents(&data).unwrap();
    let o = common::labelgan(&[
        "factory",
        "--generator",
        gp.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        data.join("synthetic").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("lies inside the input --data"),
        "{err}"
    );
    assert_eq!(folder_contents(&data).unwrap(), before);
    // A folder another run holds is refused, naming the holder.
    let busy = t("busy");
    let lock = labelgan_core::RunLock::acquire(&busy).unwrap();
    let o = common::labelgan(&[
        "factory",
        "--generator",
        gp.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        busy.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    let holder = format!("process {}", std::process::id());
    assert!(
        !o.status.success() && err.contains("in use by another labelgan run") && err.contains(&holder),
        "{err}"
    );
    drop(lock);
}

/// A cluster run: labelers fitted once (`--count 0`), three shards that take their
/// index from a Kubernetes Indexed Job's variable and label with the shipped labelers,
/// `labelgan merge`: the bytes of the same run on one machine.
#[test]
fn scheduler_shards_merge_into_the_run_of_one_machine() {
    let t = |n: &str| common::tmp_in("factory-shards", n);
    let gp = t("g.safetensors");
    common::tiny_generator(&gp);
    let data = t("labelled");
    labelgan_toyworld::write_dataset(&data, 1, 3, 32, |_, _| {}).unwrap();
    let run = |out: &Path, count: &str, extra: &[&str], index: Option<&str>| {
        let mut args = vec![
            "factory",
            "--generator",
            gp.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--count",
            count,
            "--block",
            "5",
            "--filter",
            "0.2",
            "--members",
            "1",
            "--pixels-per-image",
            "100",
            "--max-epochs",
            "1",
            "--calibrate-images",
            "4",
        ];
        args.extend_from_slice(extra);
        let mut c = Command::new(env!("CARGO_BIN_EXE_labelgan"));
        c.args(&args)
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("SLURM_ARRAY_TASK_ID");
        if let Some(i) = index {
            c.env("JOB_COMPLETION_INDEX", i);
        }
        c.output().unwrap()
    };
    let fit = t("fit");
    let o = run(&fit, "0", &[], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let labelers = fit.join("labelers");
    let l = labelers.to_str().unwrap();
    let one = t("one");
    let o = run(&one, "22", &["--labelers", l], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut dirs = vec![];
    for i in ["0", "1", "2"] {
        let dir = t(&format!("shard{i}"));
        let o = run(&dir, "22", &["--labelers", l, "--shards", "3"], Some(i));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("fitted earlier"), "a shard fits nothing: {err}");
        let line: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
        assert_eq!(line["shard"], format!("{}/3", i.parse::<usize>().unwrap() + 1));
        dirs.push(dir);
    }
    let merged = t("merged");
    let mut args = vec!["merge", "--out", merged.to_str().unwrap()];
    args.extend(dirs.iter().map(|d| d.to_str().unwrap()));
    let o = common::labelgan(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    same_files(&one, &merged);

    // No index to read: one line naming the variables, usage error.
    let o = run(&t("noindex"), "22", &["--labelers", l, "--shards", "3"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("JOB_COMPLETION_INDEX") && err.lines().count() == 1,
        "{err}"
    );
}
