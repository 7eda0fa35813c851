import Foundation

/// `deeptrain plot`: SVG charts of a run's metrics.jsonl — loss and learning rate, the balance
/// losses, the drop fraction, and an expert-load heatmap per MoE layer. Plain SVG, no
/// dependencies; any browser shows them.
package enum Plot {
    struct Series {
        let name: String
        let color: String
        let points: [(Double, Double)]
    }

    /// Writes the charts into `outDir`; returns the files written.
    package static func run(metricsPath: String, outDir: String) throws -> [String] {
        guard let text = try? String(contentsOfFile: metricsPath, encoding: .utf8) else {
            throw RecipeError(file: metricsPath, line: nil, column: nil, path: "", message: "cannot be read")
        }
        var rows: [[String: Any]] = []
        for (i, line) in text.split(separator: "\n").enumerated() {
            guard let d = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw RecipeError(file: metricsPath, line: i + 1, column: nil, path: "", message: "is not a JSON object")
            }
            rows.append(d)
        }
        guard !rows.isEmpty else { throw RecipeError(file: metricsPath, line: nil, column: nil, path: "", message: "has no metrics yet") }
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        func series(_ key: String, _ color: String, _ name: String? = nil) -> Series {
            Series(name: name ?? key, color: color, points: rows.compactMap { r in
                guard let x = r["global_step"] as? Double ?? (r["global_step"] as? Int).map(Double.init),
                      let y = r[key] as? Double ?? (r[key] as? Int).map(Double.init) else { return nil }
                return (x, y)
            })
        }
        var written: [String] = []
        func save(_ name: String, _ svg: String) throws {
            let p = (outDir as NSString).appendingPathComponent(name)
            try svg.write(toFile: p, atomically: true, encoding: .utf8)
            written.append(p)
        }
        try save("loss.svg", chart(title: "Loss", series: [series("loss", "#1f77b4"), series("ce", "#ff7f0e"), series("eval_loss", "#2ca02c", "held-out")]))
        try save("lr.svg", chart(title: "Learning rate", series: [series("lr", "#9467bd")]))
        try save("balance.svg", chart(title: "Balance losses", series: [series("aux_expert", "#1f77b4", "expert"),
                                                                         series("aux_device", "#ff7f0e", "device"),
                                                                         series("aux_comm", "#2ca02c", "communication")]))
        try save("drop_fraction.svg", chart(title: "Dropped token-to-expert assignments", series: [series("drop_fraction", "#d62728")]))
        let acc = series("eval_exact_match", "#8c564b", "exact match")
        if !acc.points.isEmpty {
            try save("exact_match.svg", chart(title: "Held-out exact match and mean reward", series: [acc, series("eval_reward", "#17becf", "mean reward")]))
        }
        let reward = series("reward_mean", "#2ca02c", "reward (sampled)")
        if !reward.points.isEmpty {
            try save("grpo_reward.svg", chart(title: "GRPO: reward of the sampled completions", series: [
                reward, series("rewards/exact", "#1f77b4", "exact"), series("rewards/format", "#ff7f0e", "format"),
                series("eval_reward", "#17becf", "held-out reward")]))
            try save("grpo_kl.svg", chart(title: "GRPO: KL to the reference and clip fraction", series: [
                series("kl", "#d62728", "kl"), series("clip_fraction", "#9467bd", "clip fraction"),
                series("frac_zero_std_groups", "#8c564b", "zero-std groups")]))
            try save("grpo_length.svg", chart(title: "GRPO: completion length", series: [series("completion_len_mean", "#7f7f7f", "mean tokens")]))
        }
        if let loads = rows.last?["expert_load"] as? [[Double]], !loads.isEmpty {
            for layer in loads.indices {
                let matrix = rows.compactMap { ($0["expert_load"] as? [[Double]]).flatMap { $0.indices.contains(layer) ? $0[layer] : nil } }
                try save("expert_load_\(layer).svg", heatmap(title: "Expert load, MoE layer \(layer) (fraction of assignments)", matrix: matrix))
            }
        }
        return written
    }

    static func chart(title: String, series: [Series], width: Double = 640, height: Double = 360) -> String {
        let all = series.flatMap(\.points)
        let pad = 56.0
        var svg = ##"<svg xmlns="http://www.w3.org/2000/svg" width="\##(Int(width))" height="\##(Int(height))" font-family="sans-serif" font-size="12">"##
        svg += ##"<rect width="100%" height="100%" fill="white"/><text x="\##(pad)" y="20" font-size="14">\##(title)</text>"##
        guard let x0 = all.map(\.0).min(), let x1 = all.map(\.0).max(), let y0r = all.map(\.1).min(), let y1r = all.map(\.1).max() else {
            return svg + ##"<text x="\##(pad)" y="60">no data</text></svg>"##
        }
        let y0 = y0r == y1r ? y0r - 1 : y0r, y1 = y0r == y1r ? y1r + 1 : y1r
        let xs = { (x: Double) in pad + (x - x0) / Swift.max(x1 - x0, 1e-12) * (width - 2 * pad) }
        let ys = { (y: Double) in height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad) }
        svg += ##"<line x1="\##(pad)" y1="\##(height - pad)" x2="\##(width - pad)" y2="\##(height - pad)" stroke="#444"/>"##
        svg += ##"<line x1="\##(pad)" y1="\##(pad)" x2="\##(pad)" y2="\##(height - pad)" stroke="#444"/>"##
        for i in 0...4 {
            let y = y0 + (y1 - y0) * Double(i) / 4
            svg += ##"<text x="4" y="\##(ys(y) + 4)">\##(String(format: "%.3g", y))</text>"##
            svg += ##"<line x1="\##(pad)" y1="\##(ys(y))" x2="\##(width - pad)" y2="\##(ys(y))" stroke="#ddd"/>"##
            let x = x0 + (x1 - x0) * Double(i) / 4
            svg += ##"<text x="\##(xs(x) - 10)" y="\##(height - pad + 16)">\##(Int(x))</text>"##
        }
        svg += ##"<text x="\##(width / 2 - 20)" y="\##(height - 10)">global step</text>"##
        for (i, s) in series.enumerated() where !s.points.isEmpty {
            let path = s.points.map { String(format: "%.1f,%.1f", xs($0.0), ys($0.1)) }.joined(separator: " ")
            if s.points.count == 1 || s.name == "held-out" || s.name == "exact match" {
                for p in s.points { svg += ##"<circle cx="\##(xs(p.0))" cy="\##(ys(p.1))" r="3" fill="\##(s.color)"/>"## }
            }
            svg += ##"<polyline fill="none" stroke="\##(s.color)" stroke-width="1.5" points="\##(path)"/>"##
            svg += ##"<text x="\##(width - pad - 110)" y="\##(pad + 16 * Double(i))" fill="\##(s.color)">\##(s.name)</text>"##
        }
        return svg + "</svg>"
    }

    /// Rows are steps, columns experts; colour is the share of assignments (white 0 → dark 2/E).
    static func heatmap(title: String, matrix: [[Double]], width: Double = 640, height: Double = 360) -> String {
        let pad = 56.0
        var svg = ##"<svg xmlns="http://www.w3.org/2000/svg" width="\##(Int(width))" height="\##(Int(height))" font-family="sans-serif" font-size="12">"##
        svg += ##"<rect width="100%" height="100%" fill="white"/><text x="\##(pad)" y="20" font-size="14">\##(title)</text>"##
        guard let experts = matrix.first?.count, experts > 0 else { return svg + "</svg>" }
        // Down-sample steps to at most 200 columns.
        let stride = Swift.max(1, matrix.count / 200)
        let cols = Swift.stride(from: 0, to: matrix.count, by: stride).map { matrix[$0] }
        let cw = (width - 2 * pad) / Double(cols.count), rh = (height - 2 * pad) / Double(experts)
        let top = 2.0 / Double(experts)
        for (c, load) in cols.enumerated() {
            for (e, v) in load.enumerated() {
                let t = Swift.min(v / top, 1)
                let shade = Int(255 * (1 - t))
                svg += ##"<rect x="\##(pad + Double(c) * cw)" y="\##(pad + Double(e) * rh)" width="\##(cw + 0.5)" height="\##(rh + 0.5)" fill="rgb(\##(shade),\##(shade),255)"/>"##
            }
        }
        for e in 0..<experts where experts <= 32 {
            svg += ##"<text x="\##(pad - 30)" y="\##(pad + (Double(e) + 0.7) * rh)">e\##(e)</text>"##
        }
        svg += ##"<text x="\##(width / 2 - 60)" y="\##(height - 20)">step → (uniform load = \##(String(format: "%.3f", 1 / Double(experts))))</text>"##
        return svg + "</svg>"
    }
}
