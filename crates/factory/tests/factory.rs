//! The factory end to end on a tiny random generator: a labeler fitted on generated
//! images (the DatasetGAN path) labels a filtered dataset; a run stopped twice and
//! resumed ends byte-identical to an uninterrupted one; filtering drops the most
//! uncertain candidates of each block.

use labelgan_core::one_hot;
use labelgan_core::{Generator, NoiseMode, Truncation};
use labelgan_dataset::ClassLabels;
use labelgan_dataset::{DatasetWriter, ImageLabels, folder_contents};
use labelgan_factory::{FactoryConfig, Labelers, candidate_z, fit_labeler, generate_dataset};
use labelgan_labeler::{Head, LabelerConfig};
mod common;
use common::{tiny_g, tiny_g_with_classes};

/// A segmentation labeler fitted on "annotations" of the generated images of `ws`:
/// class 1 where the red channel is bright.
fn red_channel_labelers(
    g: &labelgan_stylegan::StyleGan2,
    ws: &candle_core::Tensor,
    members: usize,
    pixels: usize,
    epochs: usize,
) -> Labelers {
    let img = g.image(ws, NoiseMode::Const).unwrap();
    let red = img
        .narrow(1, 0, 1)
        .unwrap()
        .flatten_from(1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let targets: Vec<ImageLabels> = red
        .iter()
        .map(|r| ImageLabels::mask(r.iter().map(|&v| (v > 0.0) as u32).collect()))
        .collect();
    let mut cfg = LabelerConfig::new(Head::Segmentation { classes: 2 }, 16);
    cfg.members = members;
    cfg.hidden = Some((8, 4));
    cfg.pixels_per_image = pixels;
    cfg.max_epochs = epochs;
    let (seg, _) = fit_labeler(g, ws, &targets, &cfg, |_| {}).unwrap();
    Labelers {
        segmentation: Some(seg),
        ..Labelers::default()
    }
}

#[test]
fn labels_filters_and_resumes_byte_identically() {
    let g = tiny_g();
    let ws = g.map(&g.sample_z(4, 1).unwrap(), None, Truncation::NONE).unwrap();
    let labelers = red_channel_labelers(&g, &ws, 2, 128, 2);
    let fc = FactoryConfig {
        count: 7,
        seed: 3,
        block: 4,
        filter_fraction: 0.25,
        batch: 3,
        ..FactoryConfig::default()
    };
    let base = std::env::temp_dir().join(format!("lg-factory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (a, b) = (base.join("a"), base.join("b"));
    let mut seen = vec![];
    let n = generate_dataset(&g, &labelers, &fc, &a, &mut |p| {
        seen.push(p.written);
        true
    })
    .unwrap();
    assert_eq!(n, 7);
    assert_eq!(seen, (1..=7).collect::<Vec<_>>());

    // Stopped after 2 images, then after 5 (mid-block both times), then finished.
    for stop in [2, 5, usize::MAX] {
        generate_dataset(&g, &labelers, &fc, &b, &mut |p| p.written < stop).unwrap();
    }
    assert_eq!(folder_contents(&a).unwrap(), folder_contents(&b).unwrap());

    // A finished dataset with an image deleted, a mask altered and a preview gone is
    // found out on the next run and made whole again, byte-identical.
    std::fs::remove_file(b.join("images/000002.png")).unwrap();
    std::fs::write(b.join("masks/000005.png"), b"not the mask").unwrap();
    std::fs::remove_file(b.join("previews/000006.png")).unwrap();
    assert_eq!(DatasetWriter::open(&b, 16).unwrap().damaged(), &[2, 5, 6]);
    generate_dataset(&g, &labelers, &fc, &b, &mut |_| true).unwrap();
    assert_eq!(folder_contents(&a).unwrap(), folder_contents(&b).unwrap());
    // Made again from other settings, the same image cannot come out the same: refused.
    std::fs::remove_file(b.join("images/000001.png")).unwrap();
    let other = FactoryConfig { seed: 4, ..fc.clone() };
    let e = generate_dataset(&g, &labelers, &other, &b, &mut |_| true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("image 1") && e.contains("seed 3"), "{e}");

    // Each block of 4 candidates keeps its 3 least uncertain, in candidate order.
    let w = DatasetWriter::open(&a, 16).unwrap();
    let cands: Vec<u64> = w.entries().iter().map(|e| e.candidate).collect();
    assert!(cands.windows(2).all(|p| p[0] < p[1]), "{cands:?}");
    assert_eq!(cands.iter().filter(|&&c| c < 4).count(), 3);
    // The manifest's z is the candidate's latent.
    let e = &w.entries()[0];
    let z = candidate_z(&g, 3, e.candidate)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(z, e.z);
    for f in [
        "keypoints.json",
        "contact_sheet.png",
        "masks/000006.png",
        "previews/000000.png",
    ] {
        assert!(a.join(f).exists(), "{f}");
    }
    std::fs::remove_dir_all(&base).unwrap();
}

/// `run_factory` records what made its folder; a resume with another seed, block or
/// labelled set is refused before anything is written, naming the setting and both
/// values; `clear_run` starts over.
#[test]
fn a_resume_with_other_settings_is_refused_until_restarted() {
    use labelgan_dataset::{LabelledSet, Targets};
    use labelgan_factory::{FactoryRun, FitOptions, Method, PriorCalibration, RUN_FILE, clear_run, run_factory};
    let g = tiny_g();
    let ws = g.map(&g.sample_z(3, 5).unwrap(), None, Truncation::NONE).unwrap();
    let images = g.image(&ws, NoiseMode::Const).unwrap();
    let masks: Vec<Vec<u32>> = (0..3)
        .map(|i| (0..256).map(|p| ((p + i) % 3 == 0) as u32).collect())
        .collect();
    let set = LabelledSet {
        images,
        targets: Targets {
            masks: Some(masks),
            ..Targets::default()
        },
        names: (0..3).map(|i| format!("{i}.png")).collect(),
    };
    let run = FactoryRun {
        fit: FitOptions {
            members: 1,
            pixels_per_image: 64,
            max_epochs: 1,
            ..FitOptions::default()
        },
        calibration: PriorCalibration {
            rounds: 0,
            ..PriorCalibration::default()
        },
        dataset: FactoryConfig {
            count: 3,
            block: 4,
            batch: 2,
            ..FactoryConfig::default()
        },
        inputs: Default::default(),
    };
    let method: Method<'_, dyn labelgan_core::Inverter> = Method::DatasetGan { ws: ws.clone() };
    let out = std::env::temp_dir().join(format!("lg-factory-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    run_factory(&g, &method, &set, &run, &out, &mut |_| true).unwrap();
    assert!(out.join(RUN_FILE).exists());
    let before = folder_contents(&out).unwrap();
    // The same run again: resumes (nothing to do).
    run_factory(&g, &method, &set, &run, &out, &mut |_| true).unwrap();
    let mut other = run.clone();
    other.dataset.seed = 1;
    let e = run_factory(&g, &method, &set, &other, &out, &mut |_| true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dataset.seed = 0, this run has 1"), "{e}");
    let mut other = run.clone();
    other.fit.members = 2;
    let e = run_factory(&g, &method, &set, &other, &out, &mut |_| true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("fit.members = 1, this run has 2"), "{e}");
    let mut changed = set.clone();
    changed.targets.masks.as_mut().unwrap()[0][0] ^= 1;
    let e = run_factory(&g, &method, &changed, &run, &out, &mut |_| true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("input labelled set"), "{e}");
    assert_eq!(folder_contents(&out).unwrap(), before, "a refused run writes nothing");
    clear_run(&out).unwrap();
    let mut other = run.clone();
    other.dataset.seed = 1;
    run_factory(&g, &method, &set, &other, &out, &mut |_| true).unwrap();

    // The labeler cache on its own: reused with the same settings and labels, fitted
    // again (and said so) with others.
    let cache = out.join("cache");
    let fit = |opts: &FitOptions, targets: &Targets| {
        let mut log = vec![];
        labelgan_factory::fit_labelers(&g, targets, opts, Some(&cache), &mut || Ok(ws.clone()), &mut |l| {
            log.push(l.to_string())
        })
        .unwrap();
        log.join("\n")
    };
    let log = fit(&run.fit, &set.targets);
    assert!(!log.contains("fitted earlier"), "{log}");
    assert!(fit(&run.fit, &set.targets).contains("using the segmentation labeler fitted earlier"));
    let more = FitOptions {
        max_epochs: 2,
        ..run.fit.clone()
    };
    let log = fit(&more, &set.targets);
    assert!(log.contains("max_epochs = 1, not 2: fitting again"), "{log}");
    let log = fit(&more, &changed.targets);
    assert!(log.contains("input labels"), "{log}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// A conditional generator's dataset is class-labelled: classes in turn by candidate (or
/// the one asked for) in the manifest and `classes.json`, each image made for its class;
/// a class the generator cannot make is refused before anything is written.
#[test]
fn a_conditional_generator_makes_a_class_labelled_dataset() {
    let g = tiny_g_with_classes(3);
    let c = one_hot(&[0, 1, 2, 0], 3, &candle_core::Device::Cpu).unwrap();
    let ws = g.map(&g.sample_z(4, 1).unwrap(), Some(&c), Truncation::NONE).unwrap();
    let labelers = red_channel_labelers(&g, &ws, 1, 64, 1);
    let fc = FactoryConfig {
        count: 6,
        seed: 3,
        block: 4,
        filter_fraction: 0.25,
        batch: 3,
        ..FactoryConfig::default()
    };
    let base = std::env::temp_dir().join(format!("lg-factory-classes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (turn, one) = (base.join("turn"), base.join("one"));
    generate_dataset(&g, &labelers, &fc, &turn, &mut |_| true).unwrap();
    let w = DatasetWriter::open(&turn, 16).unwrap();
    let labels = ClassLabels::read(&turn).unwrap().expect("classes.json");
    assert_eq!(labels.classes.len(), 3);
    for (e, l) in w.entries().iter().zip(&labels.images) {
        assert_eq!(e.class, Some((e.candidate % 3) as u32), "classes in turn");
        assert_eq!(
            (l.file.as_str(), l.class),
            (DatasetWriter::name(e.index).as_str(), e.class.unwrap())
        );
    }
    // The image on disk is the candidate's z rendered for its class.
    let e = &w.entries()[1];
    let z = candidate_z(&g, 3, e.candidate).unwrap();
    let c = one_hot(&[e.class.unwrap()], 3, &candle_core::Device::Cpu).unwrap();
    let want = g
        .image(&g.map(&z, Some(&c), Truncation::NONE).unwrap(), NoiseMode::Const)
        .unwrap();
    let other = one_hot(&[(e.class.unwrap() + 1) % 3], 3, &candle_core::Device::Cpu).unwrap();
    let not = g
        .image(&g.map(&z, Some(&other), Truncation::NONE).unwrap(), NoiseMode::Const)
        .unwrap();
    let on_disk = labelgan_core::image_io::load_image(&turn.join(&e.image))
        .unwrap()
        .to_rgb8()
        .into_raw();
    let as_bytes = |t: &candle_core::Tensor| {
        labelgan_core::image_io::tensor_to_images(t).unwrap()[0]
            .to_rgb8()
            .into_raw()
    };
    assert_eq!(on_disk, as_bytes(&want));
    assert_ne!(on_disk, as_bytes(&not), "the class changes the image");

    let fixed = FactoryConfig {
        class: Some(2),
        ..fc.clone()
    };
    generate_dataset(&g, &labelers, &fixed, &one, &mut |_| true).unwrap();
    let w = DatasetWriter::open(&one, 16).unwrap();
    assert!(w.entries().iter().all(|e| e.class == Some(2)));

    let bad = base.join("bad");
    let e = generate_dataset(
        &g,
        &labelers,
        &FactoryConfig {
            class: Some(3),
            ..fc.clone()
        },
        &bad,
        &mut |_| true,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("class 3") && e.contains("0..3"), "{e}");
    let e = generate_dataset(&tiny_g(), &labelers, &fixed, &bad, &mut |_| true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unconditional"), "{e}");
    assert!(!bad.exists(), "nothing written");
    std::fs::remove_dir_all(&base).unwrap();
}

/// A dataset made as 3 shards (labelers fitted once, shipped to each as files) and
/// merged is, byte for byte, the dataset one machine makes; merging refuses an
/// unfinished shard, a missing one and shards of another run.
#[test]
fn three_shards_merge_into_the_bytes_of_one_machine() {
    use labelgan_core::Shard;
    use labelgan_dataset::{LabelledSet, Targets};
    use labelgan_factory::{
        FactoryRun, FitOptions, LABELERS_DIR, Method, PriorCalibration, copy_labelers, merge_shards, run_factory,
    };
    let g = tiny_g_with_classes(3);
    let c = one_hot(&[0, 1, 2], 3, &candle_core::Device::Cpu).unwrap();
    let ws = g.map(&g.sample_z(3, 5).unwrap(), Some(&c), Truncation::NONE).unwrap();
    let masks: Vec<Vec<u32>> = (0..3)
        .map(|i| (0..256).map(|p| ((p / 16 + i) % 3 == 0) as u32).collect())
        .collect();
    let set = LabelledSet {
        images: g.image(&ws, NoiseMode::Const).unwrap(),
        targets: Targets {
            masks: Some(masks),
            ..Targets::default()
        },
        names: (0..3).map(|i| format!("{i}.png")).collect(),
    };
    let run = |count: usize, shard: Option<Shard>| FactoryRun {
        fit: FitOptions {
            members: 1,
            pixels_per_image: 64,
            max_epochs: 1,
            ..FitOptions::default()
        },
        calibration: PriorCalibration {
            rounds: 2,
            images: 4,
            ..PriorCalibration::default()
        },
        dataset: FactoryConfig {
            count,
            block: 4,
            filter_fraction: 0.25,
            batch: 3,
            shard,
            ..FactoryConfig::default()
        },
        inputs: Default::default(),
    };
    let method: Method<'_, dyn labelgan_core::Inverter> = Method::DatasetGan { ws: ws.clone() };
    let base = std::env::temp_dir().join(format!("lg-factory-shards-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    // Fit once (no images), then one machine and three shards label with those files.
    let fit = base.join("fit");
    run_factory(&g, &method, &set, &run(0, None), &fit, &mut |_| true).unwrap();
    let labelers = fit.join(LABELERS_DIR);
    let one = base.join("one");
    copy_labelers(&labelers, &one).unwrap();
    // 14 images, 3 kept per block: 5 blocks, the last one short, dealt 2/2/1.
    run_factory(&g, &method, &set, &run(14, None), &one, &mut |_| true).unwrap();
    let shard_dirs: Vec<_> = (1..=3).map(|k| base.join(format!("shard{k}"))).collect();
    for (k, dir) in (1..4).zip(&shard_dirs).rev() {
        copy_labelers(&labelers, dir).unwrap();
        let shard = Some(Shard { k, n: 3 });
        run_factory(&g, &method, &set, &run(14, shard), dir, &mut |_| true).unwrap();
    }
    let merged = base.join("merged");
    let any_order = [shard_dirs[2].clone(), shard_dirs[0].clone(), shard_dirs[1].clone()];
    // Stopped after 5 images, then resumed.
    let mut seen = vec![];
    let n = merge_shards(&any_order, &merged, &mut |done, count| {
        seen.push((done, count));
        done < 5
    })
    .unwrap();
    assert_eq!((n, seen.last().copied()), (5, Some((5, 14))));
    let n = merge_shards(&any_order, &merged, &mut |_, _| true).unwrap();
    assert_eq!(n, 14);
    let (a, b) = (folder_contents(&one).unwrap(), folder_contents(&merged).unwrap());
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b));
    for ((p, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{p} differs");
    }
    assert!(merged.join("classes.json").exists());

    // Again: nothing to do. Refused: into a folder with another run's dataset, a shard
    // missing, shards of another run, an unfinished shard.
    let mut all = |_: usize, _: usize| true;
    assert_eq!(merge_shards(&shard_dirs, &merged, &mut all).unwrap(), 14);
    let e = merge_shards(&shard_dirs, &fit, &mut all).unwrap_err().to_string();
    assert!(e.contains("dataset.count = 0, this run has 14"), "{e}");
    let e = merge_shards(&shard_dirs[..2], &base.join("m2"), &mut all)
        .unwrap_err()
        .to_string();
    assert!(e.contains("shard 1/3") && e.contains("2 folders"), "{e}");
    let e = merge_shards(
        &[shard_dirs[0].clone(), shard_dirs[0].clone(), shard_dirs[2].clone()],
        &base.join("m3"),
        &mut all,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("shard 2/3 is missing"), "{e}");
    let other = base.join("other2");
    copy_labelers(&labelers, &other).unwrap();
    let mut r = run(14, Some(Shard { k: 2, n: 3 }));
    r.dataset.seed = 9;
    run_factory(&g, &method, &set, &r, &other, &mut |_| true).unwrap();
    let e = merge_shards(
        &[shard_dirs[0].clone(), other.clone(), shard_dirs[2].clone()],
        &base.join("m4"),
        &mut all,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("different runs") && e.contains("dataset.seed"), "{e}");
    let part = base.join("part2");
    copy_labelers(&labelers, &part).unwrap();
    let shard2 = run(14, Some(Shard { k: 2, n: 3 }));
    run_factory(&g, &method, &set, &shard2, &part, &mut |e| match e {
        labelgan_factory::FactoryEvent::Written(p) => p.written < 2,
        _ => true,
    })
    .unwrap();
    let e = merge_shards(
        &[shard_dirs[0].clone(), part, shard_dirs[2].clone()],
        &base.join("m5"),
        &mut all,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("has not finished"), "{e}");
    std::fs::remove_dir_all(&base).unwrap();
}
