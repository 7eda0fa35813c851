import Foundation
import Testing

/// The tiny pretraining recipe across a simulated cluster of 2 nodes on this machine
/// (launch/virtual-cluster.sh: a network namespace per node, a bridge, links limited to 1 Gbit/s;
/// launch/cluster.sh: mpirun over TCP between the nodes, shared memory within one;
/// docs/multinode.md). Layouts that cross the nodes must give one process's losses, gradient
/// norms and final weights bit for bit (docs/design.md §6.7) — V3's router biases with bf16
/// communication, held-out evaluation and GRPO's sampling too — and a rank lost on a node must
/// end the job with exit code 3. The suite brings the cluster up and always down again, and takes
/// over (then removes) any simulated cluster already up. It needs root and network namespaces;
/// elsewhere it is skipped, saying so. Runs .build/release/deeptrain, which
/// `swift test -c release` builds (`make test`).
// Evaluated when the suite is about to run; false shows in the output as the suite and its test
// "skipped: no network namespaces …".
@Suite(.serialized, .enabled(if: NetworkNamespaces.available, "no network namespaces (needs root and `ip netns add`)"))
struct VirtualClusterTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let binary = root.appendingPathComponent(".build/release/deeptrain").path
    static let clusterScript = root.appendingPathComponent("launch/virtual-cluster.sh").path
    static let launcher = root.appendingPathComponent("launch/cluster.sh").path
    static let recipe = root.appendingPathComponent("recipes/tiny-pretrain.yaml").path
    /// 20 steps, 4 micro-batches, one thread per rank in every run (a GEMM's bits depend on its
    /// thread count), no evaluation, one checkpoint at the end.
    static let short = ["--set", "stages.0.steps=20", "--set", "threads=1", "--set", "parallel.microbatches=4",
                        "--set", "stages.0.eval.every=0", "--set", "checkpoint.every=0"]
    /// No command of the suite may hang it: each runs under timeout(1), which signals the
    /// whole process group (mpirun and the node daemons it started) when the time is up.
    static let limit = "180"

    static let ip = NetworkNamespaces.ip

    func cluster(_ args: [String]) throws -> CommandRun {
        try CommandRun("/usr/bin/timeout", [Self.limit, Self.clusterScript] + args)
    }

    /// `deeptrain train` of the tiny recipe: across the cluster with `perNode` ranks on each
    /// node, or as one process without MPI when `perNode` is nil.
    func train(perNode: Int?, dir: String, _ layout: [String] = []) throws -> CommandRun {
        let options = [Self.recipe, "--run-dir", dir] + Self.short + layout
        guard let perNode else { return try CommandRun(Self.binary, ["train"] + options) }
        return try CommandRun("/usr/bin/timeout", [Self.limit, Self.launcher, "\(perNode)"] + options)
    }

    func lines(_ dir: String) -> [[String: Any]] {
        let text = (try? String(contentsOfFile: "\(dir)/metrics.jsonl", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// Each step's loss and gradient norm as bit patterns, then the final weights' digest.
    func fingerprint(_ dir: String) throws -> [String] {
        let steps = lines(dir).map { line in
            ["loss", "grad_norm"].map { String(((line[$0] as? Double) ?? .nan).bitPattern, radix: 16) }.joined(separator: "/")
        }
        let inspected = try CommandRun(Self.binary, ["inspect", "\(dir)/checkpoints/step-00000020.h5"])
        let digest = inspected.stdout.split(separator: "\n").first { $0.hasPrefix("digest") }.map(String.init) ?? "no digest: \(inspected.stderr)"
        return steps + [digest]
    }

    func tempDir() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("dt-cluster-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    @Test func layoutsAcrossTwoNodesGiveOneProcessBitsAndALostRankEndsTheJob() throws {
        let base = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: base) }
        // Down always, even when an expectation fails or `up` did half its work; then nothing
        // of the cluster is left. Up twice: the second must succeed and add nothing (two
        // /etc/hosts lines, below).
        defer {
            let down = try? cluster(["down"])
            #expect(down?.status == 0, "virtual-cluster.sh down: \(down?.stderr ?? "did not run")")
            let left = (try? CommandRun(Self.ip!, ["netns", "list"]).stdout) ?? ""
            #expect(!left.contains("dt-node") && !left.contains("dt-hub"), "namespaces left: \(left)")
            let hosts = (try? String(contentsOfFile: "/etc/hosts", encoding: .utf8)) ?? ""
            #expect(!hosts.contains("# deeptrain virtual-cluster"), "/etc/hosts lines left: \(hosts)")
        }
        for _ in 0..<2 {
            let up = try cluster(["up", "2", "1gbit"])
            try #require(up.status == 0, "virtual-cluster.sh up: \(up.stderr)")
        }
        let status = try cluster(["status"])
        #expect(status.stdout.contains("dt-node0") && status.stdout.contains("dt-node1") && status.stdout.contains("1Gbit"), "\(status.stdout)")
        let hosts = (try? String(contentsOfFile: "/etc/hosts", encoding: .utf8)) ?? ""
        #expect(hosts.components(separatedBy: "# deeptrain virtual-cluster").count == 3, "/etc/hosts: \(hosts)")

        let reference = "\(base)/one-process"
        let single = try train(perNode: nil, dir: reference)
        try #require(single.status == 0, "one process: \(single.stderr)")
        let expected = try fingerprint(reference)
        #expect(expected.count == 21)

        // One rank a node: dp's gradient buckets and all-gather, then the experts' all-to-all,
        // then the pipeline's activations over TCP between the nodes; two ranks a node (world
        // ranks 0, 1 on dt-node0): each ep group within a node (shared memory) and its
        // replicas across the nodes, an ep group across the nodes, pp across with dp and ep
        // within. The six layouts of issue #31, and dp 4 × ep 2 with its ep groups placed across
        // the nodes (parallel.ep_placement) instead of within them.
        let layouts: [(perNode: Int, name: String, sets: [String])] = [
            (1, "dp2", ["--set", "parallel.dp=2"]),
            (1, "dp2-ep2", ["--set", "parallel.dp=2", "--set", "parallel.ep=2", "--set", "checkpoint.every=10"]),
            (1, "pp2", ["--set", "parallel.pp=2", "--set", "parallel.dp=1"]),
            (2, "dp4-ep2", ["--set", "parallel.dp=4", "--set", "parallel.ep=2"]),
            (2, "dp4-ep4", ["--set", "parallel.dp=4", "--set", "parallel.ep=4"]),
            (2, "dp4-ep2-across", ["--set", "parallel.dp=4", "--set", "parallel.ep=2", "--set", "parallel.ep_placement=across_nodes"]),
            (2, "dp2-ep2-pp2", ["--set", "parallel.dp=2", "--set", "parallel.ep=2", "--set", "parallel.pp=2"]),
        ]
        for layout in layouts {
            let dir = "\(base)/\(layout.name)"
            let r = try train(perNode: layout.perNode, dir: dir, layout.sets)
            #expect(r.status == 0, "\(layout.name), \(layout.perNode) a node: \(r.stderr)")
            // The log says where the groups run (ProcessGrid.dpNodes/epNodes/edpNodes).
            let placement = ["dp2": "dp groups span 2, ep groups 1, expert replicas 2", "dp4-ep2": "dp groups span 2, ep groups 1, expert replicas 2",
                             "dp4-ep4": "dp groups span 2, ep groups 2, expert replicas 1",
                             "dp4-ep2-across": "dp groups span 2, ep groups 2, expert replicas 1"][layout.name]
            if let placement { #expect(r.stdout.contains(placement), "\(layout.name): no '\(placement)' in \(r.stdout.prefix(600))") }
            if layout.name == "dp2-ep2" {
                let routing = "router groups on nodes (rank 0's ep group): 0→0 1→0 2→1 3→1; a token's experts are on at most topk_group = 2 nodes"
                #expect(r.stdout.contains(routing), "dp2-ep2: no '\(routing)' in \(r.stdout.prefix(900))")
            }
            let got = try fingerprint(dir)
            let differing: String? = got.count != expected.count ? "\(got.count) lines, not \(expected.count)"
                : zip(got, expected).enumerated().first { $1.0 != $1.1 }.map { "line \($0.offset): \($0.element.0) against \($0.element.1)" }
            #expect(differing == nil, "\(layout.name), \(layout.perNode) a node: not one process's bits (loss/grad_norm bits per step, then the digest); \(differing ?? "")")
        }

        // dp 2 × ep 2's step-10 checkpoint resumed at dp 4 × ep 4, two ranks a node: the
        // uninterrupted run's weights at step 20.
        let elsewhere = "\(base)/resumed-dp4-ep4"
        let again = try train(perNode: 2, dir: elsewhere, ["--set", "parallel.dp=4", "--set", "parallel.ep=4",
                                                         "--resume", "\(base)/dp2-ep2/checkpoints/step-00000010.h5"])
        #expect(again.status == 0 && again.stdout.contains("resumed from"), "resume at dp 4 × ep 4: \(again.stderr)")
        #expect(try fingerprint(elsewhere).last == expected.last, "resumed at dp 4 × ep 4 across the nodes: not one process's weights")

        try v3BiasesAcrossTwoNodes(base: base)
        try dispatchCrossesOncePerTokenAndNode()
        try wideRoutingThroughGateways(base: base)
        try evaluationAndSamplingAcrossTwoNodes(base: base)

        // A rank lost on dt-node1 mid-run, three ways, with parallel.timeout 3 s: the job ends
        // (exit 3) naming what was lost, and nothing of it is left on any node.
        try lostRankEndsTheJob(.kill, dir: "\(base)/killed", names: "on node dt-node1")
        try lostRankEndsTheJob(.stop, dir: "\(base)/stopped", names: "lost rank 1 (host dt-node1)")
        let cut = "\(base)/cut"
        try lostRankEndsTheJob(.cut, dir: cut, names: "lost rank 1 (host dt-node1)")
        _ = try CommandRun(Self.ip!, ["-n", "dt-hub", "link", "set", "dt-v1", "up"])

        // The cut run's last checkpoint resumes on one node: five steps more, as one rank.
        let latest = try String(contentsOfFile: "\(cut)/checkpoints/latest", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let step = try #require(Int(latest.filter(\.isNumber)), "checkpoints/latest: \(latest)")
        let resumed = try CommandRun("/usr/bin/timeout", [Self.limit, Self.launcher, "1", Self.recipe, "--run-dir", cut, "--resume", "auto"]
                                     + Self.short + ["--set", "stages.0.steps=\(step + 5)"], environment: ["CLUSTER_NODES": "1"])
        #expect(resumed.status == 0, "resume on one node: \(resumed.stderr)")
        #expect(resumed.stdout.contains("resumed from") && lines(cut).last?["step"] as? Int == step + 5,
                "resume on one node from step \(step): \(resumed.stdout.suffix(400))")
    }

    /// `bench dispatch` with one and two ranks a node, four experts a token from two groups (a
    /// node each): a token's row crosses to the other node once if any of its experts is there
    /// — to the node's gateway, which fans it out to the owners — so rows per token equal the
    /// remote nodes, under the bound of M = 1 group, against two rows a token with one row per
    /// (token, expert); the sums come back the same way.
    func dispatchCrossesOncePerTokenAndNode() throws {
        for (perNode, limit) in [(1, "1"), (1, "none"), (2, "1")] {
            let r = try CommandRun("/usr/bin/timeout", [Self.limit, Self.launcher, "\(perNode)", "--", "bench", "dispatch", "--experts-per-token", "4",
                                                        "--groups", "2", "--topk-group", limit, "--tokens", "256", "--steps", "1"])
            try #require(r.status == 0, "bench dispatch --topk-group \(limit), \(perNode) a node: \(r.stderr)")
            let json = try #require(r.stdout.firstIndex(of: "{").map { String(r.stdout[$0...]) })
            let report = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
            let perToken = try #require(report["per_token_layer"] as? [String: Any])
            let rows = try #require(perToken["inter_node_rows"] as? [String: Double]), bytes = try #require(perToken["inter_node_bytes"] as? [String: Double])
            let remote = try #require(perToken["remote_nodes"] as? Double), perExpert = try #require(perToken["per_expert_rows"] as? Double)
            #expect(report["group_nodes"] as? [[Int]] == [[0], [1]], "\(json)")
            for phase in ["dispatch", "combine", "combine_backward", "dispatch_backward"] {
                #expect(abs((rows[phase] ?? -1) - remote) < 1e-9,
                        "--topk-group \(limit), \(perNode) a node, \(phase): \(rows[phase] ?? -1) rows a token, \(remote) remote nodes")
            }
            #expect(perExpert > 1.5 * remote, "--topk-group \(limit): \(perExpert) rows a token per (token, expert) against \(remote)")
            if limit == "1" {
                let bound = try #require(report["bound_bytes"] as? Double)
                #expect(remote <= 1 && (bytes["dispatch"] ?? .infinity) <= bound, "\(json)")
            }
        }
    }

    /// Four experts a token out of twelve at ep 4, two ranks a node: a token's row crosses to
    /// the other node once and its gateway fans it out to both ranks there; the three-expert
    /// blocks are tiled by two tree nodes each. One process's weights, fp32 and bf16.
    func wideRoutingThroughGateways(base: String) throws {
        let recipe = Self.root.appendingPathComponent("Tests/Fixtures/recipes/wide-routing.yaml").path
        for dtype in ["fp32", "bf16"] {
            let dtypeSet = ["--set", "parallel.comm_dtype=\(dtype)"]
            let one = try CommandRun(Self.binary, ["train", recipe, "--run-dir", "\(base)/wide-\(dtype)-one"] + dtypeSet)
            try #require(one.status == 0, "wide routing, one process: \(one.stderr)")
            let dir = "\(base)/wide-\(dtype)-ep4"
            let r = try CommandRun("/usr/bin/timeout", [Self.limit, Self.launcher, "2", recipe, "--run-dir", dir, "--set", "parallel.dp=4",
                                                        "--set", "parallel.ep=4"] + dtypeSet)
            #expect(r.status == 0, "wide routing at ep 4 across the nodes (\(dtype)): \(r.stderr)")
            func digest(_ d: String) throws -> String {
                try CommandRun(Self.binary, ["inspect", "\(d)/checkpoints/step-00000010.h5"]).stdout
                    .split(separator: "\n").first { $0.hasPrefix("digest") }.map(String.init) ?? "no digest"
            }
            #expect(try digest(dir) == digest("\(base)/wide-\(dtype)-one"), "wide routing at ep 4 across the nodes (\(dtype)): not one process's weights")
        }
    }

    /// V3's router biases, moved by every step's world-summed expert loads, and bf16
    /// communication (rounded where no layout decides): dp 2 × ep 2 across the nodes gives the
    /// one process's biases and bits.
    func v3BiasesAcrossTwoNodes(base: String) throws {
        let v3 = ["--set", "model=tiny-v3", "--set", "stages.0.moe.bias_update_speed=0.01", "--set", "parallel.comm_dtype=bf16"]
        var seen: [String: [String]] = [:]
        for (name, perNode, layout) in [("v3-one", nil, []), ("v3-dp2-ep2", 1, ["--set", "parallel.dp=2", "--set", "parallel.ep=2"])] as [(String, Int?, [String])] {
            let dir = "\(base)/\(name)"
            let r = try train(perNode: perNode, dir: dir, v3 + layout)
            try #require(r.status == 0, "\(name): \(r.stderr)")
            let inspected = try CommandRun(Self.binary, ["inspect", "\(dir)/checkpoints/step-00000020.h5"]).stdout
            let bias = inspected.split(separator: "\n").first { $0.hasPrefix("router bias") }.map(String.init) ?? "no router bias line"
            #expect(!bias.contains("max |b| 0.0 "), "\(name): the biases did not move: \(bias)")
            seen[name] = try fingerprint(dir) + [bias]
        }
        #expect(seen["v3-one"] == seen["v3-dp2-ep2"], "V3 biases across two nodes: \(seen)")
    }

    /// Held-out evaluation and GRPO's sampling on the sharded model (each request computed whole
    /// by one data-parallel position, experts through the all-to-all): at dp 2 × ep 2 one rank a
    /// node and dp 2 × ep 2 × pp 2 two a node, every logged number is the one process's.
    func evaluationAndSamplingAcrossTwoNodes(base: String) throws {
        let recipe = Self.root.appendingPathComponent("Tests/Fixtures/recipes/sharded-post.yaml").path
        let keys = ["loss", "grad_norm", "reward_mean", "kl", "clip_fraction", "entropy", "routing_mismatch", "sampling_logp_difference_mean",
                    "completion_len_mean", "eval_loss", "eval_exact_match", "eval_reward"]
        func run(_ name: String, _ perNode: Int?, _ layout: [String]) throws -> [[String: Any]] {
            let dir = "\(base)/\(name)"
            let args = [recipe, "--run-dir", dir] + layout
            let r = try perNode.map { try CommandRun("/usr/bin/timeout", [Self.limit, Self.launcher, "\($0)"] + args) }
                ?? CommandRun(Self.binary, ["train"] + args)
            #expect(r.status == 0, "\(name): \(r.stderr)")
            return lines(dir)
        }
        let serial = try run("post-one", nil, [])
        #expect(serial.count == 4 && serial.filter { $0["eval_loss"] != nil }.count == 2 && serial.last?["reward_mean"] != nil)
        for (name, perNode, layout) in [("post-dp2-ep2", 1, ["--set", "parallel.dp=2", "--set", "parallel.ep=2"]),
                                        ("post-dp2-ep2-pp2", 2, ["--set", "parallel.dp=2", "--set", "parallel.ep=2", "--set", "parallel.pp=2"])] {
            let m = try run(name, perNode, layout)
            #expect(m.count == serial.count, "\(name): \(m.count) metrics lines")
            for (x, y) in zip(serial, m) {
                for k in keys where x[k] != nil {
                    #expect((x[k] as? Double) == (y[k] as? Double), "\(name) \(x["stage"]!) step \(x["step"]!): \(k) \(x[k]!) vs \(y[k] ?? "missing")")
                }
            }
        }
    }

    enum Fault: String { case kill, stop, cut }

    /// A long dp 2 run across the two nodes (timeout 3 s, launch/supervise.sh's grace 3 s);
    /// after its first checkpoint, `fault` hits the rank on dt-node1: SIGKILL, SIGSTOP, or its
    /// node's link cut. The job must end with exit code 3 within 20 s, its stderr naming the
    /// loss (`names`), no process left in any node.
    func lostRankEndsTheJob(_ fault: Fault, dir: String, names: String) throws {
        nonisolated(unsafe) var result: CommandRun?
        let job = Thread {
            result = try? CommandRun("/usr/bin/timeout", [Self.limit, Self.launcher, "1", Self.recipe, "--run-dir", dir] + Self.short
                + ["--set", "parallel.dp=2", "--set", "stages.0.steps=100000", "--set", "checkpoint.every=5", "--set", "parallel.timeout=3"],
                environment: ["DEEPTRAIN_LOST_GRACE": "3"])
        }
        job.start()
        var victim: Int32?
        for _ in 0..<600 where victim == nil {   // at most 60 s for the job's first checkpoint
            usleep(100_000)
            guard FileManager.default.fileExists(atPath: "\(dir)/checkpoints/latest") else { continue }
            victim = rankProcess(in: "dt-node1")
        }
        #expect(victim != nil, "\(fault): no checkpoint or no deeptrain rank in dt-node1 within 60 s")
        let hit = Date()
        switch (fault, victim) {
        case (_, nil): break
        case (.kill, let v?): kill(v, SIGKILL)
        case (.stop, let v?): kill(v, SIGSTOP)
        case (.cut, _): _ = try CommandRun(Self.ip!, ["-n", "dt-hub", "link", "set", "dt-v1", "down"])
        }
        while !job.isFinished { usleep(10_000) }
        let seconds = Date().timeIntervalSince(hit)
        let tail = result?.stderr.suffix(1200) ?? "no result"
        #expect(result?.status == 3, "\(fault): exit \(result?.status ?? -1) \(Int(seconds)) s after the fault: \(tail)")
        #expect(result?.stderr.contains(names) == true, "\(fault): stderr does not say '\(names)': \(tail)")
        #expect(seconds < 20, "\(fault): the job ended \(seconds) s after the fault")
        for node in ["dt-hub", "dt-node0", "dt-node1"] {
            var left = ""
            for _ in 0..<20 {   // processes being killed may take a moment to go
                left = ((try? CommandRun(Self.ip!, ["netns", "pids", node]).stdout) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
                if left.isEmpty { break }
                usleep(100_000)
            }
            let commands = left.split(separator: "\n").map { (try? String(contentsOfFile: "/proc/\($0)/cmdline", encoding: .utf8)) ?? "?" }
            #expect(left.isEmpty, "\(fault): processes left in \(node): \(commands)")
        }
    }

    /// The deeptrain rank running in a node's namespace.
    func rankProcess(in node: String) -> Int32? {
        let pids = (try? CommandRun(Self.ip!, ["netns", "pids", node]).stdout) ?? ""
        let program = URL(fileURLWithPath: Self.binary).resolvingSymlinksInPath().path
        return pids.split(separator: "\n").compactMap { Int32($0) }.first { pid in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) == program
        }
    }
}

/// The probe behind VirtualClusterTests' skip: root, `ip` present, and a network namespace can
/// be made (and is removed at once).
enum NetworkNamespaces {
    static let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let available: Bool = {
        guard getuid() == 0, let ip else { return false }
        let probe = "dt-probe-\(getpid())"
        guard let added = try? CommandRun(ip, ["netns", "add", probe]), added.status == 0 else { return false }
        _ = try? CommandRun(ip, ["netns", "del", probe])
        return true
    }()
}
