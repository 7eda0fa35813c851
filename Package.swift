// swift-tools-version:6.1
import PackageDescription

// Modules follow docs/design.md; dependencies point one way:
// C shims (and BLASKernel, the start-up kernel choice; BF16GEMM, the bfloat16 products) → Autograd → FileFormats → NN → Optim → (DeepSeek → Collectives → Parallel → Checkpoint) → Tokenizers → Jinja → Data → Training → Benchmarks → deeptrain.
// The targets that parse downloaded files (FileSafety, FileFormats, Tokenizers, Jinja) keep
// Swift's runtime checks (plain -O): a read past a buffer there must trap, not corrupt memory
// (docs/security.md). Numeric targets build with -Ounchecked.
// Release builds target AVX2/FMA (Haswell and later, every x86 server of the last decade): the
// fused loops' SIMD16 code and fastExp vectorise only with it (see docs/benchmarks.md).
#if arch(x86_64)
let cpu = ["-target-cpu", "haswell"]
#else
let cpu: [String] = []
#endif
let release: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"] + cpu, .when(configuration: .release))]

let package = Package(
    name: "DeepTrain",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "deeptrain", targets: ["deeptrain"]),
        .executable(name: "deeptrain-fuzz", targets: ["deeptrain-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas"),
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c"),
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5"),

        // Chooses OpenBLAS's kernel before main runs (a C constructor), in the binary and the tests.
        .target(name: "BLASKernel", dependencies: ["CBLAS"]),
        // The bfloat16 GEMM (AVX512-BF16), for `precision: bf16`.
        .target(name: "BF16GEMM", cSettings: [.unsafeFlags(["-O3"], .when(configuration: .release))]),
        .target(name: "Autograd", dependencies: ["CBLAS", "BLASKernel", "BF16GEMM"], swiftSettings: release),
        .target(name: "FileSafety"),
        .target(name: "FileFormats", dependencies: ["Autograd", "CHDF5", "FileSafety"]),
        .target(name: "Tokenizers", dependencies: ["FileSafety"]),
        .target(name: "Jinja", dependencies: ["Tokenizers", "FileSafety"]),
        .target(name: "NN", dependencies: ["Autograd"], swiftSettings: release),
        .target(name: "Optim", dependencies: ["Autograd", "NN"], swiftSettings: release),
        .target(name: "DeepSeek", dependencies: ["Autograd", "NN", "Optim", "CBLAS", "FileFormats"], swiftSettings: release),
        .target(name: "Collectives", dependencies: ["CMPI", "BLASKernel", "Autograd"], swiftSettings: release),
        .target(name: "Parallel", dependencies: ["Autograd", "NN", "Optim", "DeepSeek", "Collectives", "FileSafety"], swiftSettings: release),
        .target(name: "Checkpoint", dependencies: ["Autograd", "NN", "DeepSeek", "CHDF5", "FileFormats", "FileSafety"], swiftSettings: release),
        // Data reads JSONL and text files a user downloads: checked like the parsers.
        .target(name: "Data", dependencies: ["Autograd", "Tokenizers", "Jinja", "FileSafety"]),
        .target(name: "Training", dependencies: ["Autograd", "NN", "Optim", "DeepSeek", "Collectives", "Parallel", "Checkpoint", "Data", "CBLAS", "Yams", "FileSafety"], swiftSettings: release),
        // The `bench` commands' measurements: the trainer does not carry its benchmarks.
        .target(name: "Benchmarks", dependencies: ["Autograd", "NN", "Optim", "DeepSeek", "Collectives", "Parallel", "Data", "Training",
                                                   "CBLAS", "CMPI", "BLASKernel"], swiftSettings: release),
        .executableTarget(
            name: "deeptrain",
            dependencies: [
                "Training", "Benchmarks", "DeepSeek", "Collectives", "Parallel", "Checkpoint", "Data", "Autograd", "CBLAS", "CMPI", "CHDF5", "FileSafety",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: release),

        // Fuzzing (docs/security.md): the targets, the driver, and the replay of every committed input.
        .target(name: "FuzzTargets", dependencies: ["Checkpoint", "Data", "DeepSeek", "Training", "CHDF5"]),
        .executableTarget(name: "deeptrain-fuzz", dependencies: ["FuzzTargets", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(name: "FuzzTests", dependencies: ["FuzzTargets"]),

        .testTarget(name: "AutogradTests", dependencies: ["Autograd", "BF16GEMM"]),
        .testTarget(name: "NNTests", dependencies: ["NN", "Autograd"]),
        .testTarget(name: "OptimTests", dependencies: ["Optim", "NN", "Autograd"]),
        .testTarget(name: "DeepSeekTests", dependencies: ["DeepSeek", "Checkpoint", "NN", "Autograd", "FileFormats"]),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint", "DeepSeek", "Autograd", "FileFormats", "FileSafety", "CHDF5"]),
        .testTarget(name: "CollectivesTests", dependencies: ["Collectives", "Autograd"]),
        .testTarget(name: "ParallelTests", dependencies: ["Parallel", "Collectives", "DeepSeek", "Optim", "Autograd"]),
        .testTarget(name: "DataTests", dependencies: ["Data", "Tokenizers", "Jinja", "FileSafety"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Data", "NN", "Optim", "Autograd", "Checkpoint", "Benchmarks"]),
    ]
)
