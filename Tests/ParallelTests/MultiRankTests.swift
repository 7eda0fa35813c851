import Foundation
import Testing

/// The parallel layers under the real mpirun, through launch/local.sh, on the tiny MoE
/// pretraining recipe: parity across layouts, resume at another layout, dropping and balance
/// under real expert parallelism, a failing rank, an impossible layout, and the collectives.
/// Runs .build/release/deeptrain, which `swift test -c release` builds (`make test`).
@Suite(.serialized) struct MultiRankTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let binary = root.appendingPathComponent(".build/release/deeptrain").path
    static let launcher = root.appendingPathComponent("launch/local.sh").path
    static let recipe = root.appendingPathComponent("recipes/tiny-pretrain.yaml").path
    /// 20 steps, 4 micro-batches of 8 sequences, one thread per rank in every layout (the bits
    /// of a GEMM depend on its thread count, so the comparison fixes it).
    static let short = ["--set", "stages.0.steps=20", "--set", "threads=1", "--set", "parallel.microbatches=4",
                        "--set", "stages.0.eval.every=0", "--set", "checkpoint.every=10", "--set", "checkpoint.keep=5"]

    struct Run { let status: Int32; let stdout: String; let stderr: String; let seconds: Double }

    /// Runs a command with the MPI variables of any enclosing job removed (a child that
    /// inherits them would try to join that job).
    func run(_ exe: String, _ args: [String], env extra: [String: String] = [:]) throws -> Run {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OMPI_") && !$0.key.hasPrefix("PMIX_") }
        for (k, v) in extra { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let t0 = Date()
        try p.run()
        // Read both pipes while it runs (a full pipe would block the child).
        nonisolated(unsafe) var errData = Data()
        let reader = Thread { errData = err.fileHandleForReading.readDataToEndOfFile() }
        reader.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        while !reader.isFinished { usleep(1000) }
        return Run(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                   stderr: String(decoding: errData, as: UTF8.self), seconds: Date().timeIntervalSince(t0))
    }

    func train(_ ranks: Int, dp: Int, ep: Int, pp: Int, dir: String, extra: [String] = [], env: [String: String] = [:]) throws -> Run {
        try run(Self.launcher, ["\(ranks)", Self.recipe, "--run-dir", dir, "--set", "parallel.dp=\(dp)", "--set", "parallel.ep=\(ep)",
                                "--set", "parallel.pp=\(pp)"] + Self.short + extra, env: env)
    }

    func metrics(_ dir: String) -> [[String: Any]] {
        let text = (try? String(contentsOfFile: "\(dir)/metrics.jsonl", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    func digest(_ checkpoint: String) throws -> String {
        let r = try run(Self.binary, ["inspect", checkpoint])
        return r.stdout.split(separator: "\n").first { $0.hasPrefix("digest") }.map(String.init) ?? "none: \(r.stderr)"
    }

    func tempDir() -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("dt-mpi-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    /// Largest relative difference of the per-step losses, and whether losses, gradient norms
    /// and the final weights are all bit-identical.
    func compare(_ a: String, _ b: String) throws -> (rel: Double, identical: Bool) {
        let ma = metrics(a), mb = metrics(b)
        #expect(ma.count == 20 && mb.count == 20, "\(b): \(mb.count) metrics lines")
        var rel = 0.0, same = ma.count == mb.count
        for (x, y) in zip(ma, mb) {
            let lx = x["loss"] as! Double, ly = y["loss"] as! Double
            rel = max(rel, abs(lx - ly) / abs(lx))
            if lx.bitPattern != ly.bitPattern || (x["grad_norm"] as! Double) != (y["grad_norm"] as! Double) { same = false }
        }
        let da = try digest("\(a)/checkpoints/step-00000020.h5"), db = try digest("\(b)/checkpoints/step-00000020.h5")
        return (rel, same && da == db)
    }

    @Test func layoutsChangeSpeedNotNumbersAndRunsResumeAtAnyLayout() throws {
        let base = tempDir()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let layouts = [(1, 1, 1), (2, 1, 1), (4, 1, 1), (2, 2, 1), (4, 4, 1), (1, 1, 2), (2, 2, 2)]
        var report: [String] = []
        for (dp, ep, pp) in layouts {
            let dir = "\(base)/dp\(dp)-ep\(ep)-pp\(pp)"
            let r = try train(dp * pp, dp: dp, ep: ep, pp: pp, dir: dir)
            #expect(r.status == 0, "(\(dp),\(ep),\(pp)): \(r.stderr)")
            if dp == 1 && ep == 1 && pp == 1 { continue }
            let (rel, identical) = try compare("\(base)/dp1-ep1-pp1", dir)
            report.append("(\(dp),\(ep),\(pp)): " + (identical ? "bit-identical" : "max relative loss difference \(rel)"))
            if ep == 1 && pp == 1 {
                #expect(identical, "data-parallel layout (\(dp),1,1) must be bit-identical; max rel \(rel)")
            } else {
                #expect(rel <= 1e-6, "(\(dp),\(ep),\(pp)): max relative loss difference \(rel)")
            }
        }
        print("parity against (1,1,1), 20 steps of tiny-pretrain:\n  " + report.joined(separator: "\n  "))

        // Resume the (2,2,1) run's step-10 checkpoint at (1,1,1) and at (1,1,2).
        let written = "\(base)/dp2-ep2-pp1/checkpoints/step-00000010.h5"
        #expect(FileManager.default.fileExists(atPath: written))
        for (dp, pp) in [(1, 1), (1, 2)] {
            let dir = "\(base)/resumed-dp\(dp)-pp\(pp)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: written, toPath: "\(dir)/from-2-2-1.h5")
            let r = try train(dp * pp, dp: dp, ep: 1, pp: pp, dir: dir, extra: ["--resume", "\(dir)/from-2-2-1.h5"])
            #expect(r.status == 0 && r.stdout.contains("resumed from"), "\(r.stderr)")
            let uninterrupted = metrics("\(base)/dp1-ep1-pp1").suffix(10), continued = metrics(dir)
            #expect(continued.count == 10)
            for (x, y) in zip(uninterrupted, continued) {
                let lx = x["loss"] as! Double, ly = y["loss"] as! Double
                #expect(abs(lx - ly) <= 1e-6 * abs(lx), "step \(y["step"]!): \(lx) vs \(ly)")
            }
            #expect(try digest("\(dir)/checkpoints/step-00000020.h5") == digest("\(base)/dp1-ep1-pp1/checkpoints/step-00000020.h5"))
        }
    }

    /// The thread count moves no bits (`GemmCut`: products cut by their shape, each piece on one
    /// OpenBLAS thread, or on the bfloat16 kernel): 1 rank × 1 thread, 1 rank × 2 threads and dp 2
    /// × 1 thread end on the same losses, gradient norms and weights, at both precisions. fp32
    /// under Haswell's kernel when the CPU runs it, the kernel whose bits change with the way
    /// OpenBLAS threads split a call (docs/design.md §6.5).
    @Test(arguments: ["fp32", "bf16"]) func theThreadCountMovesNoBits(_ precision: String) throws {
        let base = tempDir()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.split(separator: "\n")
            .first { $0.hasPrefix("flags") }.map { Set($0.split(separator: " ").map(String.init)) } ?? []
        let env = flags.contains("avx2") && flags.contains("fma") ? ["OPENBLAS_CORETYPE": "Haswell"] : [:]
        let p = ["--set", "precision=\(precision)"]
        let one = try train(1, dp: 1, ep: 1, pp: 1, dir: "\(base)/1x1", extra: p, env: env)
        let two = try train(1, dp: 1, ep: 1, pp: 1, dir: "\(base)/1x2", extra: p + ["--set", "threads=2"], env: env)
        let dp2 = try train(2, dp: 2, ep: 1, pp: 1, dir: "\(base)/dp2x1", extra: p, env: env)
        for r in [one, two, dp2] { #expect(r.status == 0, "\(r.stderr)") }
        #expect(try compare("\(base)/1x1", "\(base)/1x2").identical, "\(precision): 1 × 1 thread vs 1 × 2 threads under \(env)")
        #expect(try compare("\(base)/1x1", "\(base)/dp2x1").identical, "\(precision): 1 × 1 thread vs dp 2 × 1 thread under \(env)")
    }

    /// V3's aux-loss-free balancing under real mpirun: the router biases move by world-summed
    /// integer counts, so after 20 steps they are bit-identical in every layout, and they moved.
    @Test func v3RouterBiasesAreBitIdenticalAcrossLayouts() throws {
        let base = tempDir()
        defer { try? FileManager.default.removeItem(atPath: base) }
        var digests: [String: String] = [:]
        for (dp, ep, pp) in [(1, 1, 1), (2, 1, 1), (2, 2, 1), (1, 1, 2)] {
            let dir = "\(base)/dp\(dp)-ep\(ep)-pp\(pp)"
            let r = try train(dp * pp, dp: dp, ep: ep, pp: pp, dir: dir,
                              extra: ["--set", "model=tiny-v3", "--set", "stages.0.moe.bias_update_speed=0.01", "--set", "checkpoint.every=0"])
            #expect(r.status == 0, "(\(dp),\(ep),\(pp)): \(r.stderr)")
            let out = try run(Self.binary, ["inspect", "\(dir)/checkpoints/step-00000020.h5"]).stdout
            let line = out.split(separator: "\n").first { $0.hasPrefix("router bias") }.map(String.init) ?? "none"
            #expect(!line.contains("max |b| 0.0 "), "the biases did not move: \(line)")
            digests["(\(dp),\(ep),\(pp))"] = line
        }
        #expect(Set(digests.values).count == 1, "router biases differ between layouts: \(digests)")

        // With the MTP depth trained too (pp 1): its MoE block's experts go through the ep
        // all-to-all like the decoder's; biases bit-identical, losses within 1e-6.
        var mtp: [String: String] = [:]
        for (dp, ep) in [(1, 1), (2, 2)] {
            let dir = "\(base)/mtp-dp\(dp)-ep\(ep)"
            let r = try train(dp, dp: dp, ep: ep, pp: 1, dir: dir,
                              extra: ["--set", "model=tiny-v3", "--set", "stages.0.moe.bias_update_speed=0.01", "--set", "checkpoint.every=0",
                                      "--set", "stages.0.mtp.depth=1"])
            #expect(r.status == 0, "MTP (\(dp),\(ep),1): \(r.stderr)")
            #expect(metrics(dir).allSatisfy { $0["mtp_loss"] != nil })
            let out = try run(Self.binary, ["inspect", "\(dir)/checkpoints/step-00000020.h5"]).stdout
            mtp["(\(dp),\(ep),1)"] = out.split(separator: "\n").first { $0.hasPrefix("router bias") }.map(String.init) ?? "none"
        }
        #expect(Set(mtp.values).count == 1, "router biases with MTP differ between layouts: \(mtp)")
        for (x, y) in zip(metrics("\(base)/mtp-dp1-ep1"), metrics("\(base)/mtp-dp2-ep2")) {
            let lx = x["loss"] as! Double, ly = y["loss"] as! Double
            #expect(abs(lx - ly) <= 1e-6 * abs(lx), "step \(y["step"]!): \(lx) vs \(ly)")
        }
    }

    /// recipes/sharded-1b.yaml made small (experts 256 wide: 38M of its 43M parameters): at
    /// (dp 4, ep 4) a rank holds a quarter of the experts, so its measured peak is well under
    /// half the serial run's, and `plan`'s estimate is within 20% of every rank's measured peak
    /// at both layouts; it checkpoints and resumes at another layout.
    @Test func aShardedModelHoldsItsPartOnlyAndResumes() throws {
        let base = tempDir()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let recipe = Self.root.appendingPathComponent("recipes/sharded-1b.yaml").path
        let small = ["--set", "model.overrides.moe_intermediate_size=256", "--set", "stages.0.steps=2"]
        var peak: [String: [Double]] = [:]
        for (ranks, ep) in [(1, 1), (4, 4)] {
            let dir = "\(base)/ranks\(ranks)"
            let r = try run(Self.launcher, ["\(ranks)", recipe, "--run-dir", dir, "--set", "parallel.ep=\(ep)"] + small)
            #expect(r.status == 0, "\(ranks) ranks: \(r.stderr)")
            let measured = metrics(dir).last?["rank_peak_rss_mb"] as? [Double] ?? []
            peak["\(ranks)"] = measured
            let p = try run(Self.binary, ["plan", "--recipe", recipe, "--dp", "\(ranks)", "--ep", "\(ep)", "--json"] + small)
            let plan = try JSONSerialization.jsonObject(with: Data(p.stdout.utf8)) as? [String: Any]
            let estimate = ((plan?["memory_per_rank"] as? [String: Any])?["peak_bytes"] as? Double ?? 0) / 1_048_576
            #expect(measured.count == ranks)
            for (rank, mb) in measured.enumerated() {
                #expect(abs(estimate / mb - 1) <= 0.2, "\(ranks) ranks, rank \(rank): plan says \(estimate) MB, measured \(mb) MB")
            }
        }
        let serial = peak["1"]?.first ?? 0, sharded = peak["4"] ?? []
        #expect(sharded.count == 4 && serial > 0)
        for (rank, mb) in sharded.enumerated() {
            #expect(mb < 0.5 * serial, "rank \(rank): \(mb) MB at (dp 4, ep 4) against \(serial) MB serial")
        }
        // The (4, 4) checkpoint resumes on 2 ranks at ep 2 and continues.
        let dir = "\(base)/ranks4"
        let r = try run(Self.launcher, ["2", recipe, "--run-dir", dir, "--set", "parallel.ep=2", "--resume", "auto"] + small
                        + ["--set", "stages.0.steps=3"])
        #expect(r.status == 0 && r.stdout.contains("resumed from"), "\(r.stderr)")
        #expect(metrics(dir).last?["step"] as? Int == 3)
    }

    /// Evaluation (held-out loss, greedy exact match) and GRPO (sampling, π_old, the frozen
    /// reference) on the sharded model: decoding through the pipeline stages and the experts'
    /// all-to-all gives the same numbers as one process, bit for bit, and no rank ever has
    /// another rank's weights in memory (`rank_foreign_weights_mb`, measured with mincore after
    /// each step and its evaluation). Experts 1024 wide, so each stacked expert tensor is mapped
    /// lazily and an ep block's half of it is whole pages. 6 ranks at (2, 2, 3) oversubscribe
    /// the machine (launch/local.sh passes --oversubscribe).
    @Test func shardedEvaluationAndSamplingMatchOneProcessAndTouchNoOtherWeights() throws {
        let base = tempDir()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let recipe = Self.root.appendingPathComponent("Tests/Fixtures/recipes/sharded-post.yaml").path
        let keys = ["loss", "grad_norm", "reward_mean", "kl", "clip_fraction", "entropy", "routing_mismatch", "sampling_logp_difference_mean",
                    "completion_len_mean", "eval_loss", "eval_exact_match", "eval_reward"]
        var serial: [[String: Any]] = []
        // (2, 2, 3): stage 0 holds only the dense first layer, so it has no expert executor yet
        // must keep step with the stages that exchange experts.
        for (dp, ep, pp) in [(1, 1, 1), (2, 2, 1), (1, 1, 2), (2, 2, 2), (2, 2, 3)] {
            let dir = "\(base)/l\(dp)\(ep)\(pp)"
            let r = try run(Self.launcher, ["\(dp * pp)", recipe, "--run-dir", dir, "--set", "parallel.dp=\(dp)", "--set", "parallel.ep=\(ep)",
                                            "--set", "parallel.pp=\(pp)"])
            #expect(r.status == 0, "(\(dp),\(ep),\(pp)): \(r.stderr)")
            let m = metrics(dir)
            #expect(m.count == 4 && m.filter { $0["eval_loss"] != nil }.count == 2 && m.last?["reward_mean"] != nil)
            for line in m {
                let foreign = line["rank_foreign_weights_mb"] as? [Double] ?? []
                #expect(foreign.count == dp * pp && foreign.allSatisfy { $0 == 0 },
                        "(\(dp),\(ep),\(pp)) \(line["stage"]!) step \(line["step"]!): other ranks' weights resident: \(foreign) MiB")
            }
            if serial.isEmpty { serial = m; continue }
            for (x, y) in zip(serial, m) {
                for k in keys where x[k] != nil {
                    #expect((x[k] as? Double) == (y[k] as? Double),
                            "(\(dp),\(ep),\(pp)) \(x["stage"]!) step \(x["step"]!): \(k) \(x[k]!) vs \(y[k] ?? "missing")")
                }
            }
        }
    }

    /// A reward-model stage (a fresh tiny model with its score head, preference pairs, held-out
    /// pairwise accuracy) gives one process's bits at (2, 2, 1) and (1, 1, 2).
    @Test func rewardStageMatchesOneProcess() throws {
        let base = tempDir()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let recipe = "\(base)/reward.yaml"
        try """
        name: reward
        seed: 5
        model: tiny
        threads: 1
        parallel:
          microbatches: 2
        stages:
          - kind: reward
            data: synthetic:arithmetic-preferences
            steps: 3
            batch_size: 8
            seq_len: 48
            eval_samples: 40
            optimizer:
              lr: 1.0e-3
            reward:
              center_rewards_coefficient: 0.01
            eval:
              every: 3
        """.write(toFile: recipe, atomically: true, encoding: .utf8)
        let keys = ["loss", "grad_norm", "accuracy", "margin", "eval_loss", "eval_accuracy"]
        var serial: [[String: Any]] = []
        for (dp, ep, pp) in [(1, 1, 1), (2, 2, 1), (1, 1, 2)] {
            let dir = "\(base)/l\(dp)\(ep)\(pp)"
            let r = try run(Self.launcher, ["\(dp * pp)", recipe, "--run-dir", dir, "--set", "parallel.dp=\(dp)", "--set", "parallel.ep=\(ep)",
                                            "--set", "parallel.pp=\(pp)"])
            #expect(r.status == 0, "(\(dp),\(ep),\(pp)): \(r.stderr)")
            let m = metrics(dir)
            #expect(m.count == 3 && m.last?["eval_accuracy"] != nil && m.last?["accuracy"] != nil, "\(m.last ?? [:])")
            if serial.isEmpty { serial = m; continue }
            for (x, y) in zip(serial, m) {
                for k in keys where x[k] != nil {
                    #expect((x[k] as? Double) == (y[k] as? Double), "(\(dp),\(ep),\(pp)) step \(x["step"]!): \(k) \(x[k]!) vs \(y[k] ?? "missing")")
                }
            }
        }
    }

    @Test func tokenDroppingAndBalanceLossesUnderRealExpertParallelism() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try train(4, dp: 4, ep: 4, pp: 1, dir: dir, extra: ["--set", "stages.0.moe.capacity_factor=1.0"])
        #expect(r.status == 0, "\(r.stderr)")
        let m = metrics(dir)
        #expect(m.count == 20)
        var dropped = false, protected = 0
        for line in m {
            let capacity = line["rank_capacity"] as! Int
            let load = line["rank_load"] as! [[Int]]
            #expect(load.count == 2 && load.allSatisfy { $0.count == 4 })  // 2 MoE layers × 4 ep ranks
            #expect(load.joined().allSatisfy { $0 <= capacity }, "step \(line["step"]!): \(load) over capacity \(capacity)")
            #expect(load.joined().contains { $0 > 0 })
            #expect(line["never_dropped_received"] as! Int == line["never_dropped_routed"] as! Int)
            protected += line["never_dropped_routed"] as! Int
            if (line["drop_fraction"] as! Double) > 0 { dropped = true }
            for k in ["aux_expert", "aux_device", "aux_comm"] { #expect((line[k] as! Double) > 0, "\(k)") }
        }
        #expect(dropped, "capacity factor 1.0 never dropped anything in 20 steps")
        #expect(protected > 0, "no never-dropped sequence was routed in 20 steps")
    }

    @Test func aFailingRankEndsTheJobWithItsMessage() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try train(4, dp: 4, ep: 1, pp: 1, dir: dir, extra: ["--set", "stages.0.steps=200"],
                          env: ["DEEPTRAIN_FAULT_RANK": "2", "DEEPTRAIN_FAULT_STEP": "3"])
        #expect(r.status != 0)
        #expect(r.seconds < 30, "took \(r.seconds) s")
        #expect(r.stderr.contains("rank 2 of 4: injected failure at global step 3"), "\(r.stderr)")
    }

    /// Bad input on one rank only (a checkpoint one node lacks) after MPI_Init: that rank
    /// cannot exit alone (MPI_Finalize would wait for the others), so it names itself and ends
    /// the job. Two ranks started as one job (mpirun's `:`), one told to resume a missing file.
    @Test func badInputOnOneRankEndsTheJobInsteadOfHanging() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try run(Self.binary, ["train", Self.recipe, "--run-dir", "\(dir)/one", "--set", "stages.0.steps=2",
                                          "--set", "stages.0.eval.every=0"])
        #expect(first.status == 0, "\(first.stderr)")
        let checkpoint = try #require(try FileManager.default.contentsOfDirectory(atPath: "\(dir)/one/checkpoints")
            .first { $0.hasSuffix(".h5") })
        var flags = ["--bind-to", "none", "--oversubscribe"]
        if getuid() == 0 { flags.append("--allow-run-as-root") }
        let common = ["train", Self.recipe, "--run-dir", "\(dir)/two", "--set", "stages.0.steps=4", "--set", "threads=1"]
        let r = try run("/usr/bin/env", ["timeout", "60", "mpirun"] + flags
                        + ["-np", "1", Self.binary] + common + ["--resume", "\(dir)/one/checkpoints/\(checkpoint)"]
                        + [":", "-np", "1", Self.binary] + common + ["--resume", "\(dir)/missing.h5"])
        #expect(r.status == 1, "exit \(r.status) after \(r.seconds) s: \(r.stderr)")
        #expect(r.stderr.contains("error: rank 1: \(dir)/missing.h5"), "\(r.stderr)")
        #expect(r.seconds < 30, "took \(r.seconds) s")
    }

    /// The gradient buckets posted during the backward (taken when a group spans nodes; forced
    /// here on one node) give the one-shot reduce-scatter's bits: the dense vector over dp with
    /// two micro-batches a rank (the earlier one's node joins each bucket's tree) and with one,
    /// the experts' layer by layer over edp (one micro-batch a rank: gradients written in the
    /// backward), and across an ep split.
    @Test func gradientBucketsKeepTheBits() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let one = try run(Self.binary, ["train", Self.recipe, "--run-dir", "\(dir)/one"] + Self.short)
        #expect(one.status == 0, "\(one.stderr)")
        for (ranks, dp, ep) in [(2, 2, 1), (4, 4, 1), (4, 4, 2)] {
            // Buckets, the allgather left running into the next forward, and the progress thread
            // under MPI_THREAD_MULTIPLE: what a job across nodes takes, forced on one node.
            let r = try train(ranks, dp: dp, ep: ep, pp: 1, dir: "\(dir)/dp\(dp)ep\(ep)",
                              env: ["DEEPTRAIN_BUCKETS": "always", "DEEPTRAIN_PROGRESS_US": "1000"])
            #expect(r.status == 0, "dp \(dp) ep \(ep): \(r.stderr)")
            let c = try compare("\(dir)/one", "\(dir)/dp\(dp)ep\(ep)")
            #expect(c.identical, "dp \(dp) ep \(ep) with gradient buckets: not one process's bits (largest relative loss difference \(c.rel))")
        }
    }

    /// `parallel.comm_dtype: bf16` rounds every node of the gradient tree and every exchanged
    /// row in every layout, one process included: the layouts still give one process's bits —
    /// over the one-shot reduce-scatter, the gradient buckets and an ep split — and the run is
    /// not the fp32 one (the rounding happened).
    @Test func bf16CommunicationKeepsTheLayoutsInAgreement() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let bf16 = ["--set", "parallel.comm_dtype=bf16"]
        let one = try run(Self.binary, ["train", Self.recipe, "--run-dir", "\(dir)/one"] + Self.short + bf16)
        #expect(one.status == 0, "\(one.stderr)")
        let fp32 = try run(Self.binary, ["train", Self.recipe, "--run-dir", "\(dir)/fp32"] + Self.short)
        #expect(fp32.status == 0, "\(fp32.stderr)")
        #expect(!(try compare("\(dir)/one", "\(dir)/fp32")).identical, "bf16 communication gave the fp32 run's bits")
        for (ranks, dp, ep, buckets) in [(2, 2, 1, false), (2, 2, 2, false), (4, 4, 2, true)] {
            let name = "dp\(dp)ep\(ep)\(buckets ? "-buckets" : "")"
            let r = try train(ranks, dp: dp, ep: ep, pp: 1, dir: "\(dir)/\(name)", extra: bf16,
                              env: buckets ? ["DEEPTRAIN_BUCKETS": "always"] : [:])
            #expect(r.status == 0, "\(name): \(r.stderr)")
            let c = try compare("\(dir)/one", "\(dir)/\(name)")
            #expect(c.identical, "\(name) with bf16 communication: not one process's bits (largest relative loss difference \(c.rel))")
        }
    }

    /// Four experts a token out of twelve (Tests/Fixtures/recipes/wide-routing.yaml): a token
    /// often uses several experts of one rank, and its results are added in the expert-sum
    /// tree's order wherever they are computed; at ep 2 and 4 the blocks (6 and 3 experts) are
    /// tiled by two tree nodes each. Losses, gradient norms and weights are one process's bits,
    /// in fp32 and with bf16 communication. (Across nodes, through the gateways:
    /// VirtualClusterTests.)
    @Test func expertSumsKeepOneProcesssBitsAtAnyEP() throws {
        let base = tempDir()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let recipe = Self.root.appendingPathComponent("Tests/Fixtures/recipes/wide-routing.yaml").path
        func fingerprint(_ dir: String) throws -> [String] {
            let steps = metrics(dir).map { m in ["loss", "grad_norm"].map { String(((m[$0] as? Double) ?? .nan).bitPattern, radix: 16) }.joined(separator: "/") }
            return steps + [try digest("\(dir)/checkpoints/step-00000010.h5")]
        }
        for dtype in ["fp32", "bf16"] {
            let one = try run(Self.binary, ["train", recipe, "--run-dir", "\(base)/\(dtype)-one", "--set", "parallel.comm_dtype=\(dtype)"])
            try #require(one.status == 0, "\(one.stderr)")
            let want = try fingerprint("\(base)/\(dtype)-one")
            #expect(want.count == 11)
            for ep in dtype == "fp32" ? [2, 4] : [4] {
                let dir = "\(base)/\(dtype)-ep\(ep)"
                let r = try run(Self.launcher, ["\(ep)", recipe, "--run-dir", dir, "--set", "parallel.dp=\(ep)", "--set", "parallel.ep=\(ep)",
                                                "--set", "parallel.comm_dtype=\(dtype)"])
                #expect(r.status == 0, "ep \(ep) \(dtype): \(r.stderr)")
                #expect(try fingerprint(dir) == want, "ep \(ep) with \(dtype) communication: not one process's bits")
            }
        }
    }

    /// The liveness deadline is about a rank's process, not its progress: with
    /// `parallel.timeout` 1 s, a reward command that takes 1.5 s, checkpoint writes that pause
    /// 1.5 s each (rank by rank, the other waiting) and an evaluation every step end normally.
    /// A stopped rank (SIGSTOP) is lost: the job ends within seconds, naming it.
    @Test func busyRanksAreAliveAndAStoppedRankIsLost() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipe = "\(dir)/busy.yaml"
        try """
        name: busy
        model: tiny
        threads: 1
        parallel:
          timeout: 1
          microbatches: 2
        stages:
          - kind: grpo
            data: synthetic:arithmetic-prompts
            steps: 2
            optimizer:
              lr: 1.0e-4
            grpo:
              num_generations: 2
              prompts_per_step: 2
              max_completion_length: 4
              rewards:
                - kind: command
                  command: "sleep 1.5; awk '{print 0}'"
            eval:
              every: 1
            eval_samples: 4
        checkpoint:
          every: 1
        """.write(toFile: recipe, atomically: true, encoding: .utf8)
        let busy = try run(Self.launcher, ["2", recipe, "--run-dir", "\(dir)/busy"], env: ["DEEPTRAIN_FAULT_CHECKPOINT_PAUSE_MS": "1500"])
        #expect(busy.status == 0, "exit \(busy.status) after \(busy.seconds) s: \(busy.stderr)")
        #expect(!busy.stderr.contains("lost rank"), "\(busy.stderr)")
        #expect(busy.seconds > 6, "the pauses did not happen: \(busy.seconds) s")

        // SIGSTOP on rank 1 once the run is under way.
        let stopped = "\(dir)/stopped"
        nonisolated(unsafe) var result: Run?
        let job = Thread {
            result = try? self.train(2, dp: 2, ep: 1, pp: 1, dir: stopped, extra: ["--set", "stages.0.steps=100000", "--set", "parallel.timeout=2"])
        }
        job.start()
        var victim: Int32?
        for _ in 0..<300 where victim == nil {
            usleep(100_000)
            guard FileManager.default.fileExists(atPath: "\(stopped)/metrics.jsonl") else { continue }
            victim = rankProcess(1)
        }
        #expect(victim != nil, "no rank 1 within 30 s")
        let hit = Date()
        if let victim { kill(victim, SIGSTOP) }
        while !job.isFinished { usleep(10_000) }
        let seconds = Date().timeIntervalSince(hit)
        #expect(result?.status == 3, "exit \(result?.status ?? -1): \(result?.stderr ?? "")")
        #expect(result?.stderr.contains("rank 0 of 2 (host ") == true && result?.stderr.contains("lost rank 1 (host ") == true, "\(result?.stderr ?? "")")
        #expect(seconds < 15, "ended \(seconds) s after SIGSTOP")
    }

    /// Ctrl-C on a launch script's run — SIGINT to its process group, as a terminal sends it:
    /// every rank stops after a checkpoint and the script exits 0, as one process does
    /// (mpirun itself returns 1 after stopping a job; launch/supervise.sh reads the stop).
    @Test func ctrlCStopsEveryRankAndTheLauncherExitsZero() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        nonisolated(unsafe) var result: Run?
        // Its own session (setsid -w: waits, passes the exit code on), and no signal blocked: a
        // child inherits the mask of the test's thread, and mpirun would never see the SIGINT.
        let unblocked = ["-MPOSIX", "-e", "sigprocmask(SIG_SETMASK, POSIX::SigSet->new); exec @ARGV or die", "--"]
        let job = Thread {
            result = try? self.run("/usr/bin/perl", unblocked + ["/usr/bin/setsid", "-w", Self.launcher, "2", Self.recipe, "--run-dir", "\(dir)/run"]
                                   + Self.short + ["--set", "stages.0.steps=100000", "--set", "checkpoint.every=0"])
        }
        job.start()
        var group: pid_t?
        for _ in 0..<300 where group == nil {
            usleep(100_000)
            guard FileManager.default.fileExists(atPath: "\(dir)/run/metrics.jsonl"), let rank = rankProcess(0),
                  let stat = try? String(contentsOfFile: "/proc/\(rank)/stat", encoding: .utf8),
                  let parent = stat.split(separator: ")").last?.split(separator: " ").dropFirst(1).first.flatMap({ pid_t($0) }) else { continue }
            let g = getpgid(parent)
            if g > 0 && g != getpgid(0) { group = g }
        }
        guard let group else {
            Issue.record("no run under way within 30 s")
            if let rank = rankProcess(0) { kill(rank, SIGKILL) }
            return
        }
        kill(-group, SIGINT)
        while !job.isFinished { usleep(10_000) }
        #expect(result?.status == 0, "exit \(result?.status ?? -1): \(result?.stderr ?? "")")
        #expect(result?.stdout.contains("stopped: resume with --resume auto") == true, "\(result?.stdout.suffix(300) ?? "")")
        let latest = try? String(contentsOfFile: "\(dir)/run/checkpoints/latest", encoding: .utf8)
        #expect(latest != nil, "no checkpoint after the stop")
    }

    /// The pid of the deeptrain process whose mpirun rank is `rank` (OMPI_COMM_WORLD_RANK).
    func rankProcess(_ rank: Int) -> Int32? {
        let program = URL(fileURLWithPath: Self.binary).resolvingSymlinksInPath().path
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { Int32($0) } ?? []
        return pids.first { pid in
            guard (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) == program,
                  let env = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ")) else { return false }
            return env.split(separator: 0).contains { String(decoding: $0, as: UTF8.self) == "OMPI_COMM_WORLD_RANK=\(rank)" }
        }
    }

    @Test func anImpossibleLayoutStopsBeforeAnyWork() throws {
        let base = tempDir()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let dir = base + "/run"
        let r = try run(Self.launcher, ["2", Self.recipe, "--run-dir", dir, "--set", "parallel.dp=4", "--set", "parallel.ep=3"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("2 ranks ≠ pp × dp = 1 × 4") && r.stderr.contains("ep = 3 does not divide dp = 4"), "\(r.stderr)")
        #expect(r.stderr.components(separatedBy: "cannot run on").count == 2, "one message, not one per rank: \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir))
    }

    @Test func benchTrainSaysABadLayoutOnce() throws {
        var flags = ["--bind-to", "none"]
        if getuid() == 0 { flags.append("--allow-run-as-root") }
        let r = try run("/usr/bin/env", ["mpirun", "-np", "2"] + flags + [Self.binary, "bench", "train", "--model", "small", "--steps", "1", "--ep", "3"])
        #expect(r.status != 0)
        #expect(r.stderr.components(separatedBy: "--ep 3 must divide the 2 ranks").count == 2, "one message, not one per rank: \(r.stderr)")
        // Without mpirun there are no ranks to split the experts over.
        let alone = try run(Self.binary, ["bench", "train", "--model", "small", "--steps", "1", "--ep", "2"])
        #expect(alone.status == 64 && alone.stderr.contains("--ep 2 splits the experts over ranks: run under mpirun"), "\(alone.stderr)")
    }

    /// `bench dispatch` says what does not fit once (not once a rank), and rejects bad options
    /// before any work; alone it counts nothing between nodes and says so.
    @Test func benchDispatchSaysWhatDoesNotFit() throws {
        var flags = ["--bind-to", "none"]
        if getuid() == 0 { flags.append("--allow-run-as-root") }
        let r = try run("/usr/bin/env", ["mpirun", "-np", "2"] + flags + [Self.binary, "bench", "dispatch", "--groups", "3", "--steps", "1"])
        #expect(r.status != 0)
        #expect(r.stderr.components(separatedBy: "--groups 3 does not divide the 16 experts").count == 2, "one message, not one per rank: \(r.stderr)")
        let bad = try run(Self.binary, ["bench", "dispatch", "--topk-group", "0"])
        #expect(bad.status == 64 && bad.stderr.contains("--topk-group 0: a positive count or none"), "\(bad.stderr)")
        let alone = try run(Self.binary, ["bench", "dispatch", "--tokens", "64", "--steps", "1"])
        #expect(alone.status == 0 && alone.stderr.contains("one process: nothing travels"), "\(alone.stderr)")
        #expect(alone.stdout.contains("\"benchmark\" : \"dispatch\""), "\(alone.stdout.prefix(300))")
    }

    /// `bench generate --generations` times GRPO-shaped rollouts both ways; a prompt's
    /// completions decoded as one batch draw the same tokens as one at a time.
    @Test func benchGenerateRollouts() throws {
        let r = try run(Self.binary, ["bench", "generate", "--model", "tiny", "--prompts", "3", "--generations", "4", "--prompt", "5",
                                      "--new-tokens", "6", "--threads", "1"])
        #expect(r.status == 0, "\(r.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(report["benchmark"] as? String == "generate-rollouts" && report["same_tokens"] as? Bool == true, "\(r.stdout)")
        let rows = report["results"] as? [[String: Any]] ?? []
        #expect(rows.map { $0["decoding"] as? String } == ["one_at_a_time", "per_prompt_batch"])
        #expect(rows.allSatisfy { ($0["tokens_per_s"] as? Double ?? 0) > 0 })
        let bad = try run(Self.binary, ["bench", "generate", "--generations", "0"])
        #expect(bad.status == 64 && bad.stderr.contains("must be positive"), "\(bad.stderr)")
    }

    @Test func collectivesMoveTheRightValues() throws {
        let p = Process()
        _ = p
        var flags = ["--bind-to", "none", "--oversubscribe"]
        if getuid() == 0 { flags.append("--allow-run-as-root") }
        for n in [2, 4] {
            let r = try run("/usr/bin/env", ["mpirun", "-np", "\(n)"] + flags + [Self.binary, "bench", "comm", "--sizes", "1000", "65536", "--repeats", "2"])
            #expect(r.status == 0, "\(r.stderr)")
            let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
            #expect(report["ranks"] as? Int == n)
            let results = report["results"] as! [[String: Any]]
            #expect(results.count == 8 && results.allSatisfy { $0["correct"] as? Bool == true }, "\(results)")
        }
    }
}
