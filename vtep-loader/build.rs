fn main() -> anyhow::Result<()> {
    // The eBPF programs compile vtep-common too; aya-build only watches the eBPF crate.
    println!("cargo:rerun-if-changed=../vtep-common/src");
    let ebpf_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../vtep-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "vtep-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
