//! P1: the time to a ready worktree at a given commit on a generated 20,000-file
//! repository (2,000 with `--quick`), side by side in one run, interleaved round by
//! round: `git worktree add --detach` (the baseline), goalpost's pool on first use (no
//! idle worktree: it adds one), and goalpost's pool recycling a worktree of the previous
//! commit (50 files differ) that carries a 200-file `target/` build cache.
//!
//! Prints `p1_add_s`, `p1_first_s`, `p1_pooled_s` (medians, seconds) and the ratios
//! `p1_first_ratio` and `p1_pooled_ratio` against the baseline.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::fs;

use goalpost_orchestrator::worktree::{Pool, PoolConfig, Ready, Released};
use goalpost_shared::git::{Oid, Repo};

use common::{Scratch, figure, median, quick, secs, time};

fn main() {
    let (files, rounds) = if quick() { (2_000, 3) } else { (20_000, 5) };
    let scratch = Scratch::new();
    let (first, second) = scratch.generate(files);
    let commits = [
        Oid::from_str(&first).unwrap(),
        Oid::from_str(&second).unwrap(),
    ];
    let mut repo = Repo::open(&scratch.repo()).unwrap();
    for (k, v) in scratch.env() {
        repo.set_cli_env(k, v);
    }
    let config = PoolConfig {
        size: 4,
        cache_dirs: vec!["target/".to_owned()],
    };
    let fresh_pool = Pool::new(&repo, scratch.path("wt/empty-pool"), config.clone());
    let pool = Pool::new(&repo, scratch.path("wt/pool"), config);

    // The pooled worktree: used once, with a build cache, its work on its ref.
    let seed = scratch.path("wt/seed");
    pool.checkout(&seed, commits[0]).unwrap();
    fs::create_dir_all(seed.join("target/debug")).unwrap();
    for i in 0..200 {
        fs::write(seed.join(format!("target/debug/o{i}.o")), "object").unwrap();
    }
    let attempt_ref = "refs/goalpost/bench/p/1";
    repo.update_ref_cas(attempt_ref, commits[0], None, "bench")
        .unwrap();
    assert_eq!(
        pool.release(&seed, &scratch.path("harvest"), attempt_ref),
        Released::Pooled
    );

    let (mut add, mut fresh, mut pooled) = (Vec::new(), Vec::new(), Vec::new());
    let mut on_ref = commits[0];
    for round in 0..rounds {
        // Alternate the target so every pooled round moves the worktree 50 files.
        let target = commits[(round + 1) % 2];

        // The baseline and the first use take turns going first: the second of the two
        // runs while the first's 20,000 removed files are still being reclaimed.
        let mut plain = || {
            let path = scratch.path(&format!("wt/add-{round}"));
            let (t, out) = time(|| {
                scratch
                    .command("git", &scratch.repo())
                    .args(["worktree", "add", "--detach"])
                    .arg(&path)
                    .arg(target.to_string())
                    .output()
                    .unwrap()
            });
            common::check(&out, "git worktree add");
            add.push(t);
            repo.worktree_remove(&path, true).unwrap();
        };
        let mut first_use = || {
            let path = scratch.path(&format!("wt/first-{round}"));
            let (t, ready) = time(|| fresh_pool.checkout(&path, target).unwrap());
            assert_eq!(ready, Ready::Added);
            fresh.push(t);
            repo.worktree_remove(&path, true).unwrap();
        };
        if round % 2 == 0 {
            plain();
            first_use();
        } else {
            first_use();
            plain();
        }

        let path = scratch.path(&format!("wt/pooled-{round}"));
        let (t, ready) = time(|| pool.checkout(&path, target).unwrap());
        assert_eq!(ready, Ready::Recycled);
        pooled.push(t);
        assert!(path.join("target/debug/o0.o").exists(), "the cache stays");
        repo.update_ref_cas(attempt_ref, target, Some(on_ref), "bench")
            .unwrap();
        on_ref = target;
        assert_eq!(
            pool.release(&path, &scratch.path("harvest"), attempt_ref),
            Released::Pooled
        );
    }
    let (add, fresh, pooled) = (median(&add), median(&fresh), median(&pooled));
    println!(
        "P1: ready worktree on a {files}-file repository, median of {rounds} rounds: \
         git worktree add {} s, goalpost first use {} s, goalpost pooled {} s",
        secs(add),
        secs(fresh),
        secs(pooled)
    );
    figure("p1_add_s", secs(add));
    figure("p1_first_s", secs(fresh));
    figure("p1_pooled_s", secs(pooled));
    figure(
        "p1_first_ratio",
        format!("{:.3}", fresh.as_secs_f64() / add.as_secs_f64()),
    );
    figure(
        "p1_pooled_ratio",
        format!("{:.3}", pooled.as_secs_f64() / add.as_secs_f64()),
    );
    pool.drain();
}
