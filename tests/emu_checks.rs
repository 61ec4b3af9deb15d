//! The kernel emulator's own checks (tests/emu/emu_runtime.cpp), each shown to catch its bug on
//! a deliberately broken kernel (tests/emu/broken_kernels.cpp) and to pass its correct twin.
//! A check that aborts is run in a child process (this test binary, re-run on one test with
//! ASPS_EMU_CASE set), whose exit status and message are inspected.

use std::process::Command;

unsafe extern "C" {
    fn asps_emu_broken(
        which: i32,
        broken: i32,
        blocks: u32,
        out: *mut u8,
        words: *const u32,
    ) -> i32;
}

const THREADS: usize = 64;

#[repr(C, align(16))]
struct Words([u32; 64]);

/// Runs kernel `which` over `blocks` blocks; returns its output (blocks * 64 four-byte cells).
fn run(which: i32, broken: bool, blocks: u32) -> Vec<u32> {
    let mut out = vec![0u32; blocks as usize * THREADS];
    let words = Words(std::array::from_fn(|i| i as u32));
    // SAFETY: `out` holds blocks * 64 four-byte cells and `words` 64 16-byte-aligned words, what
    // every kernel of asps_emu_broken indexes at most; both outlive the call.
    let rc = unsafe {
        asps_emu_broken(
            which,
            i32::from(broken),
            blocks,
            out.as_mut_ptr().cast(),
            words.0.as_ptr(),
        )
    };
    assert_eq!(rc, 0);
    out
}

/// In the child (ASPS_EMU_CASE = `test`): runs the broken kernel, which must abort. In the
/// parent: runs its correct twin here, then the child, and checks that the child died with
/// `message` on stderr.
fn expect_abort(test: &str, which: i32, message: &str) {
    if std::env::var("ASPS_EMU_CASE").as_deref() == Ok(test) {
        run(which, true, 3);
        panic!("the emulator did not catch the bug");
    }
    run(which, false, 3);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("ASPS_EMU_CASE", test)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{test}: the child passed\n{stderr}");
    assert!(
        stderr.contains("asps kernel emulator:") && stderr.contains(message),
        "{test}: expected an abort saying `{message}`, got\n{stderr}"
    );
    assert!(
        !stderr.contains("did not catch"),
        "{test}: the bug ran to the end\n{stderr}"
    );
}

#[test]
fn shared_memory_is_poisoned_before_every_block() {
    const POISON: u32 = 0x7FA5_A5A5;
    // float: poison + 1 is still NaN; the correct twin counts to 1 in every block.
    let broken = run(0, true, 3);
    let fixed = run(0, false, 3);
    for b in 0..3 {
        assert!(
            f32::from_bits(broken[b]).is_nan(),
            "block {b}: {}",
            broken[b]
        );
        assert_eq!(f32::from_bits(fixed[b]), 1.0, "block {b}");
    }
    // int, in another template instance: poison + 1 in every block, never 1, 2, 3 (persistence).
    let broken = run(1, true, 3);
    assert!(broken[..3].iter().all(|&x| x == POISON + 1), "{broken:?}");
    assert!(run(1, false, 3)[..3].iter().all(|&x| x == 1));
}

#[test]
fn a_barrier_skipped_by_some_threads_aborts() {
    expect_abort("a_barrier_skipped_by_some_threads_aborts", 2, "has exited");
}

#[test]
fn barriers_at_two_sites_abort() {
    expect_abort("barriers_at_two_sites_abort", 3, "divergent barriers");
}

#[test]
fn a_shuffle_missing_a_lane_aborts() {
    expect_abort(
        "a_shuffle_missing_a_lane_aborts",
        4,
        "reads lane 5, which has exited",
    );
}

#[test]
fn a_shuffle_reading_outside_its_mask_aborts() {
    expect_abort(
        "a_shuffle_reading_outside_its_mask_aborts",
        5,
        "outside the mask",
    );
}

#[test]
fn a_misaligned_vector_load_aborts() {
    expect_abort(
        "a_misaligned_vector_load_aborts",
        6,
        "misaligned 16-byte global load",
    );
}

/// What kernel 9 (sub_warp_groups) writes for thread `tid`, computed lane by lane; None where
/// the thread exits before writing.
fn sub_warp_groups_expected(tid: usize) -> Option<u32> {
    let (warp, lane) = (tid / 32, tid % 32);
    let mut v: Vec<i64> = (0..32).collect();
    let step = |v: &mut Vec<i64>, lanes: &dyn Fn(usize) -> bool, src: &dyn Fn(usize) -> usize| {
        let old = v.clone();
        for l in (0..32).filter(|&l| lanes(l)) {
            v[l] = old[src(l)];
        }
    };
    step(&mut v, &|l| l == 1 || l == 3, &|l| l ^ 2);
    let lane0 = v[0];
    for x in v.iter_mut().take(3) {
        *x += lane0;
    }
    step(&mut v, &|l| l < 16, &|l| l ^ 1);
    step(&mut v, &|_| true, &|l| l ^ 16);
    if warp == 1 && lane < 16 {
        return None;
    }
    step(&mut v, &|_| true, &|l| l ^ 8);
    step(&mut v, &|l| l >= 24, &|l| {
        if l + 1 < 32 { l + 1 } else { l }
    });
    Some(v[lane] as u32)
}

#[test]
fn correct_sub_warp_shuffles_pass() {
    // Groups of lanes that wait for one another, and lanes that exit before a full-mask
    // shuffle that does not read them: legal CUDA, so the emulator must run it.
    let got = run(9, false, 1);
    for (tid, &x) in got.iter().enumerate().take(THREADS) {
        assert_eq!(
            x,
            sub_warp_groups_expected(tid).unwrap_or(0),
            "thread {tid}"
        );
    }
}

#[test]
fn blocks_run_in_a_shuffled_reproducible_order() {
    let blocks = 16;
    let in_order: Vec<u32> = (1..=blocks).collect();
    let first = run(7, true, blocks);
    assert_ne!(
        first[..blocks as usize],
        in_order,
        "a kernel that needs its blocks in order passed"
    );
    assert_eq!(
        run(7, true, blocks),
        first,
        "the order depends on the seed only"
    );
}

#[test]
fn shuffles_exchange_the_right_lanes() {
    let full = run(4, false, 1);
    assert!((0..THREADS).all(|l| full[l] == (l ^ 1) as u32), "{full:?}");
    let half = run(5, false, 1);
    let want = |l: usize| if l % 32 < 16 { l ^ 8 } else { l } as u32;
    assert!((0..THREADS).all(|l| half[l] == want(l)), "{half:?}");
}

#[test]
fn the_emulator_compiles_every_kernel_file() {
    let root = env!("CARGO_MANIFEST_DIR");
    let included = std::fs::read_to_string(format!("{root}/tests/emu/kernels.inc")).unwrap();
    for folder in ["kernels", "kernels/testing"] {
        for entry in std::fs::read_dir(format!("{root}/{folder}")).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".cu") {
                assert!(
                    included.contains(&format!("\"../../{folder}/{name}\"")),
                    "{folder}/{name} is missing from tests/emu/kernels.inc"
                );
            }
        }
    }
}
