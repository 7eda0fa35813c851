import Foundation
import Testing
@testable import Training

@Suite struct PlotTests {
    @Test func writesEveryChartFromMetrics() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dt-plot-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var lines: [String] = []
        for s in 1...20 {
            var m: [String: Any] = ["global_step": s, "loss": 3.0 / Double(s), "ce": 2.9 / Double(s), "lr": 1e-3, "aux_expert": 0.01,
                                    "aux_device": 0.02, "aux_comm": 0.03, "drop_fraction": 0.05,
                                    "expert_load": [[0.5, 0.25, 0.25, 0.0], [0.25, 0.25, 0.25, 0.25]]]
            if s % 10 == 0 { m["eval_loss"] = 1.0; m["eval_exact_match"] = Double(s) / 20 }
            lines.append(String(decoding: try JSONSerialization.data(withJSONObject: m), as: UTF8.self))
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: "\(dir)/metrics.jsonl", atomically: true, encoding: .utf8)
        let files = try Plot.run(metricsPath: "\(dir)/metrics.jsonl", outDir: "\(dir)/plots").map { ($0 as NSString).lastPathComponent }
        #expect(files == ["loss.svg", "lr.svg", "balance.svg", "drop_fraction.svg", "exact_match.svg", "expert_load_0.svg", "expert_load_1.svg"])
        let loss = try String(contentsOfFile: "\(dir)/plots/loss.svg", encoding: .utf8)
        #expect(loss.hasPrefix("<svg") && loss.hasSuffix("</svg>") && loss.contains("<polyline") && loss.contains("held-out"))
        let heat = try String(contentsOfFile: "\(dir)/plots/expert_load_0.svg", encoding: .utf8)
        #expect(heat.components(separatedBy: "<rect").count - 2 == 20 * 4, "one cell per step and expert")
        try "not json\n".write(toFile: "\(dir)/bad.jsonl", atomically: true, encoding: .utf8)
        #expect(throws: RecipeError.self) { try Plot.run(metricsPath: "\(dir)/bad.jsonl", outDir: "\(dir)/p2") }
    }
}
