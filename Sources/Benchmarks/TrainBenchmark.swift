import Foundation
import Training
import Autograd
import NN
import Optim
import DeepSeek
import Parallel
import Collectives

/// `deeptrain bench train --model dense`: tokens/s, per-phase step time, MFU (docs/design.md §7) and
/// peak RSS for the benchmark dense decoder on random tokens.
package enum TrainBenchmark {
    package struct Report: Codable, Sendable {
        package var benchmark = "train"
        package var blasKernel = KernelSelection.current.kernel
        /// The machine kind, as `bench compare` matches baselines by (CPUID's vendor, family, model).
        package var cpu = "\(KernelSelection.current.vendor) family \(KernelSelection.current.family) model \(KernelSelection.current.model)"
        package let model: String
        package let parameters: Int
        package let batch: Int
        package let sequenceLength: Int
        package let threads: Int
        /// Processes (data-parallel ranks) sharing the batch; `threads` is per rank.
        package var ranks = 1
        package let stepsTimed: Int
        package let tokensPerSecond: Double
        package let stepMs: Double
        /// The fastest, median and slowest timed step: how far this run's steps spread (a
        /// shared VM's runs vary; compare runs, not single steps).
        package let stepMsMin: Double
        package let stepMsMedian: Double
        package let stepMsMax: Double
        package let forwardMs: Double
        package let backwardMs: Double
        package let optimizerMs: Double
        package let flopsPerToken: Double
        package let peakSgemmGFLOPS: Double
        package let achievedGFLOPS: Double
        package let mfu: Double
        package let peakRSSMB: Double
        /// Peak RSS after the last timed step minus after the first: 0 when activations are freed.
        package let peakRSSGrowthMB: Double
        /// Each rank's peak RSS (world rank order) under mpirun; `peakRSSMB` is rank 0's.
        package var rankPeakRSSMB: [Double]?
        /// With several ranks, per timed step (rank 0's): the optimizer phase's wait for the
        /// gradient reduce-scatter after the backward, and for the parameter allgather —
        /// the communication not hidden behind compute.
        package var exposedReduceMs: Double?
        /// `--comm-dtype` of the MoE benchmark.
        package var commDType: String?
        /// The matrix products' arithmetic (`--precision`), and for bf16 how it ran here.
        package var precision = MatmulPrecision.current.rawValue
        package var bf16Path: String? = MatmulPrecision.current == .bf16 ? MatmulPrecision.bf16Path : nil
        package var exposedGatherMs: Double?
        /// Under mpirun with --ep > 1, per timed step (rank 0's): the waits in the expert
        /// exchange, by phase (`ExchangePhase`), ms.
        package var exposedExpertMs: [String: Double]?

        enum CodingKeys: String, CodingKey {
            case benchmark
            case blasKernel = "blas_kernel"
            case cpu
            case model
            case parameters
            case batch
            case sequenceLength = "sequence_length"
            case threads
            case ranks
            case stepsTimed = "steps_timed"
            case tokensPerSecond = "tokens_per_s"
            case stepMs = "step_ms"
            case stepMsMin = "step_ms_min"
            case stepMsMedian = "step_ms_median"
            case stepMsMax = "step_ms_max"
            case forwardMs = "forward_ms"
            case backwardMs = "backward_ms"
            case optimizerMs = "optimizer_ms"
            case flopsPerToken = "flops_per_token"
            case peakSgemmGFLOPS = "peak_sgemm_gflops"
            case achievedGFLOPS = "achieved_gflops"
            case mfu
            case peakRSSMB = "peak_rss_mb"
            case peakRSSGrowthMB = "peak_rss_growth_mb"
            case rankPeakRSSMB = "rank_peak_rss_mb"
            case exposedReduceMs = "exposed_reduce_ms"
            case commDType = "comm_dtype"
            case precision
            case bf16Path = "bf16_path"
            case exposedGatherMs = "exposed_gather_ms"
            case exposedExpertMs = "exposed_expert_ms"
        }
    }

    package static func dense(config c: DenseDecoderConfig = .bench, batch b: Int = 8, length t: Int = 256,
                             warmup: Int = 2, steps: Int = 5, threads: Int = 2, peak: Double? = nil) -> Report {
        Threads.set(threads)
        let peakGF = peak ?? SgemmPeak.gflops(threads: threads)
        let model = DenseDecoderLM(c, seed: 1)
        let trainer = DenseDecoderTrainer(model: model)
        return measure(model: "dense", parameters: model.parameterCount, vocab: c.vocabSize, batch: b, length: t, warmup: warmup,
                       steps: steps, threads: threads, peak: peakGF, flopsPerToken: c.flopsPerToken(sequenceLength: t)) { rows in
            let r = trainer.step(rows: rows, batch: b, length: t, lr: 1e-4)
            return (r.forward, r.backward, r.optimizer)
        }
    }

    /// The DeepSeek-V2 `small` preset: balance losses on (expert α from the config), no
    /// dropping, batch 8 × 256, AdamW. With a grid, the batch is split over its data-parallel
    /// ranks (one micro-batch each) and the figures are for the whole job. The MFU's peak is
    /// the job's: ranks × the sgemm peak of one rank's thread count (SgemmPeak).
    package static func moe(config c: DeepSeekConfig = .small, name: String = "small", batch b: Int = 8, length t: Int = 256,
                           warmup: Int = 2, steps: Int = 5, threads: Int = 2, peak: Double? = nil, grid: ProcessGrid? = nil,
                           commDType: CommDType = .fp32) -> Report {
        Threads.set(threads)
        let ranks = grid?.world.size ?? 1
        let peakGF = peak ?? SgemmPeak.gflops(threads: threads) * Double(ranks)  // callers under mpirun pass the job's peak
        let model = DeepSeekForCausalLM(c, seed: 1, positions: t)
        let trainer = SingleProcessMoETrainer(model: model, grid: grid, commDType: commDType)
        trainer.engine.overlapGather = true  // steps follow steps; settled below
        var waits: [(reduce: Double, gather: Double)] = []
        var report = measure(model: name, parameters: model.parameterCount, vocab: c.vocabSize, batch: b, length: t, warmup: warmup,
                       steps: steps, threads: threads, peak: peakGF,
                       flopsPerToken: ModelPlan(c, sequenceLength: t).flopsPerToken) { rows in
            if waits.count == warmup { trainer.engine.executor?.resetTraffic() }  // count the timed steps only
            let r = try! trainer.step(rows: rows, batch: b, length: t, lr: 1e-4)
            waits.append((r.reduceWait, r.gatherWait))
            return (r.forward, r.backward, r.optimizer)
        }
        try! trainer.engine.settleParameters()
        report.ranks = ranks
        report.commDType = commDType.rawValue
        if ranks > 1 {
            let timed = waits.suffix(steps)
            report.exposedReduceMs = timed.map(\.reduce).reduce(0, +) / Double(steps) * 1e3
            report.exposedGatherMs = timed.map(\.gather).reduce(0, +) / Double(steps) * 1e3
            if let executor = trainer.engine.executor, (grid?.ep.size ?? 1) > 1 {
                report.exposedExpertMs = Dictionary(uniqueKeysWithValues: executor.traffic.waitSeconds.map { ($0.key.rawValue, $0.value / Double(steps) * 1e3) })
            }
        }
        if let grid { report.rankPeakRSSMB = try? grid.world.allgather([ProcessStats.peakRSSMiB]) }
        return report
    }

    /// Warm-up steps, then timed steps on random tokens; `step` returns its phase times.
    static func measure(model: String, parameters: Int, vocab: Int, batch b: Int, length t: Int, warmup: Int, steps: Int,
                        threads: Int, peak: Double, flopsPerToken fpt: Double,
                        step: ([Int]) -> (Double, Double, Double)) -> Report {
        let rng = Philox(seed: 3, purpose: "bench-train-tokens")
        func batch(_ i: Int) -> [Int] {
            (0..<(b * (t + 1))).map { Int(rng.uint64(UInt64(i * b * (t + 1) + $0)) % UInt64(vocab)) }
        }
        var fwd = 0.0, bwd = 0.0, opt = 0.0
        var each: [Double] = []
        var rssAfterFirst = 0
        // As a recipe's steps run (`StageLoop.drive`): with the spinning worker serving.
        SpinningWorker.serve {
            for i in 0..<warmup { _ = step(batch(i)) }
            Profiler.reset()
            for i in 0..<steps {
                Profiler.mark()
                let (f, bw, o) = step(batch(warmup + i))
                if i == 0 { rssAfterFirst = ProcessStats.peakRSS }
                fwd += f
                bwd += bw
                opt += o
                each.append((f + bw + o) * 1e3)
            }
        }
        if Profiler.isEnabled {
            FileHandle.standardError.write(Data((Profiler.report(steps: steps) + "\n\n" + Profiler.gemmReport(steps: steps) + "\n").utf8))
        }
        let per = (fwd + bwd + opt) / Double(steps)
        let tps = Double(b * t) / per
        let achieved = tps * fpt / 1e9
        return Report(model: model, parameters: parameters, batch: b, sequenceLength: t, threads: threads,
                      stepsTimed: steps, tokensPerSecond: tps, stepMs: per * 1e3,
                      stepMsMin: each.min() ?? 0, stepMsMedian: median(each), stepMsMax: each.max() ?? 0,
                      forwardMs: fwd / Double(steps) * 1e3,
                      backwardMs: bwd / Double(steps) * 1e3, optimizerMs: opt / Double(steps) * 1e3,
                      flopsPerToken: fpt, peakSgemmGFLOPS: peak, achievedGFLOPS: achieved,
                      mfu: achieved / peak, peakRSSMB: Double(ProcessStats.peakRSS) / 1_048_576,
                      peakRSSGrowthMB: Double(ProcessStats.peakRSS - rssAfterFirst) / 1_048_576)
    }
}

/// The middle value (the mean of the two middle ones for an even count); 0 for none.
func median(_ xs: [Double]) -> Double {
    let s = xs.sorted(), n = s.count
    guard n > 0 else { return 0 }
    return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
}
