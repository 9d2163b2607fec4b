//! Parse throughput: typical cells, and pathological lines from 64 KiB to
//! 1 MiB. Criterion reports bytes per second for each size; a flat rate
//! across sizes shows that parsing is linear in the input.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const TYPICAL: &[&str] = &[
    "#pragma repeat --iterations 20 --checkpoint-period 5 --max-by \"model.evaluate(x_test, y_test, verbose=0)[1]\"\nmodel.fit(x_train, y_train, epochs=1, verbose=0)\n",
    "#pragma parallel --iterations 20 --parallel-runs 5 --iteration-var \"var\" --max-by \"model.evaluate(x_test, y_test, verbose=0)[1]\"\nmodel.fit(x_train, y_train, epochs=1, verbose=0)\n",
    "#pragma async\nrun()\n",
];

fn typical(c: &mut Criterion) {
    let bytes: usize = TYPICAL.iter().map(|cell| cell.len()).sum();
    let mut group = c.benchmark_group("typical");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("three cells", |b| {
        b.iter(|| {
            for cell in TYPICAL {
                std::hint::black_box(pragma_parse::parse_cell(std::hint::black_box(cell)).ok());
            }
        })
    });
    group.finish();
}

/// Lines of about `size` bytes that stress the quoting rules and the option
/// scanner: alternating quotes and escapes, a value of dashes, a huge unknown
/// option (the suggestion search must not go quadratic), and an unterminated
/// quote after many pieces.
fn pathological(size: usize) -> Vec<(&'static str, String)> {
    let fill = |unit: &str| unit.repeat(size / unit.len());
    vec![
        (
            "quotes",
            format!(
                "#pragma repeat --iterations 1 --max-by {}",
                fill(r#"'a'"b\"c"\d"#)
            ),
        ),
        (
            "dashes",
            format!("#pragma repeat --iterations 1 --max-by '{}'", fill("-")),
        ),
        ("long option", format!("#pragma repeat --{} 1", fill("-x"))),
        (
            "unterminated",
            format!(
                "#pragma repeat --iterations 1 --max-by {}\"",
                fill("'-'\"-\"")
            ),
        ),
    ]
}

fn linear(c: &mut Criterion) {
    let mut group = c.benchmark_group("pathological");
    group.sample_size(20);
    for size in [64 << 10, 256 << 10, 1 << 20] {
        for (name, line) in pathological(size) {
            group.throughput(Throughput::Bytes(line.len() as u64));
            group.bench_with_input(BenchmarkId::new(name, size), &line, |b, line| {
                b.iter(|| std::hint::black_box(pragma_parse::parse_cell(line).is_ok()))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, typical, linear);
criterion_main!(benches);
