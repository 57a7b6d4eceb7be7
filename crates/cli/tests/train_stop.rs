//! `labelgan train-gan` stopped by SIGINT or SIGTERM saves a checkpoint and exits 130;
//! rerun, it continues to the same generator, bit for bit, as a run never stopped. A
//! rerun with another seed is refused, naming it.

mod common;

use std::time::Duration;

fn args(out: &str, seed: &str) -> Vec<String> {
    [
        "train-gan",
        "--toyworld",
        "--resolution",
        "32",
        "--out",
        out,
        "--kimg",
        "0.12",
        "--batch",
        "4",
        "--channel-base",
        "64",
        "--channel-max",
        "8",
        "--z-dim",
        "8",
        "--w-dim",
        "8",
        "--mapping-layers",
        "2",
        "--seed",
        seed,
    ]
    .map(String::from)
    .to_vec()
}

fn run(args: &[String]) -> std::process::Output {
    common::labelgan(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn a_signal_checkpoints_and_the_rerun_ends_as_an_unstopped_run() {
    let t = |n: &str| common::tmp_in("train-stop", n).to_str().unwrap().to_string();
    let a = t("a");
    let o = run(&args(&a, "1"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = std::fs::read(format!("{a}/generator.safetensors")).unwrap();
    for (signal, name) in [("-INT", "int"), ("-TERM", "term")] {
        let b = t(name);
        // Signalled once training has begun (the folder's record is written first).
        let ready = std::path::PathBuf::from(format!("{b}/run.json"));
        let o = common::signalled(&args(&b, "1"), &ready, Duration::from_millis(300), signal);
        let err = String::from_utf8_lossy(&o.stderr);
        if o.status.success() {
            // Finished before the signal arrived: nothing to test on this machine.
            eprintln!("{signal}: the run finished first");
            continue;
        }
        assert_eq!(o.status.code(), Some(130), "{signal}: {err}");
        assert!(err.lines().last().unwrap_or("").contains("checkpoint at step"), "{err}");
        let o = run(&args(&b, "1"));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stderr).contains("resuming"));
        assert!(
            std::fs::read(format!("{b}/generator.safetensors")).unwrap() == want,
            "{signal}: the resumed run's generator differs"
        );
        // Another seed into the same folder: refused, naming it.
        let o = run(&args(&b, "2"));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.code() == Some(1) && err.contains("seed = 1, this run has 2"),
            "{err}"
        );
    }
}

/// The same for `labelgan train-encoder`, in either stage.
#[test]
fn a_stopped_encoder_run_resumes_to_the_same_encoder() {
    let t = |n: &str| common::tmp_in("encoder-stop", n);
    let g = t("g.safetensors");
    common::tiny_generator(&g);
    let p = t("p.safetensors");
    common::tiny_perceptual(&p);
    let args = |out: &std::path::Path| -> Vec<String> {
        [
            "train-encoder",
            "--generator",
            g.to_str().unwrap(),
            "--perceptual",
            p.to_str().unwrap(),
            "--toyworld",
            "--real-images",
            "10",
            "--holdout",
            "4",
            "--out",
            out.to_str().unwrap(),
            "--steps-a",
            "60",
            "--steps-b",
            "20",
            "--batch-a",
            "4",
            "--checkpoint-every",
            "1000",
        ]
        .map(String::from)
        .to_vec()
    };
    let a = t("a");
    let o = run(&args(&a));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = std::fs::read(a.join("encoder.safetensors")).unwrap();
    for (signal, wait_ms) in [("-INT", 200), ("-TERM", 900)] {
        let b = t(&format!("b{wait_ms}"));
        let o = common::signalled(&args(&b), &b.join("run.json"), Duration::from_millis(wait_ms), signal);
        let err = String::from_utf8_lossy(&o.stderr);
        if o.status.success() {
            eprintln!("{signal}: the run finished first");
            continue;
        }
        assert_eq!(o.status.code(), Some(130), "{signal}: {err}");
        assert!(err.lines().last().unwrap_or("").contains("checkpointed"), "{err}");
        let o = run(&args(&b));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            std::fs::read(b.join("encoder.safetensors")).unwrap() == want,
            "{signal}: the resumed encoder differs"
        );
    }
}
