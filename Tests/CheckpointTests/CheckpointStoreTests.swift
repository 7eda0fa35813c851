import Foundation
import Testing
@testable import Checkpoint
@testable import FileFormats
@testable import DeepSeek
@testable import Autograd

@Suite(.serialized) struct CheckpointStoreTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/deepseek/qlora_group_limited").path

    func tempDir() -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("dt-ck-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    @Test func huggingFaceToHDF5AndBackIsBitExact() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try HFDirectory.load(Self.fixture, positions: 8)
        try CheckpointStore.save(model, state: .init(stage: "pretrain", step: 12, tokens: 3456, recipe: "name: x\n"), to: "\(dir)/ck.h5")
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/ck.h5.tmp"))
        let (back, state) = try CheckpointStore.load("\(dir)/ck.h5", positions: 8)
        #expect(state == .init(stage: "pretrain", step: 12, tokens: 3456, recipe: "name: x\n"))
        #expect(back.config == model.config)
        try HFDirectory.save(back, to: "\(dir)/hf")
        let a = try SafeTensorsFile(path: "\(Self.fixture)/model.safetensors"), b = try SafeTensorsFile(path: "\(dir)/hf/model.safetensors")
        #expect(a.names == b.names)
        for n in a.names { #expect(try a.tensor(n).values.map(\.bitPattern) == b.tensor(n).values.map(\.bitPattern), "\(n)") }
    }

    @Test func h5lsShowsHuggingFaceNames() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try CheckpointStore.save(try HFDirectory.load(Self.fixture, positions: 8), to: "\(dir)/ck.h5")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/h5ls")
        p.arguments = ["-r", "\(dir)/ck.h5"]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(text.contains("/model/model.layers.1.mlp.experts.7.down_proj.weight Dataset {32, 16}"), "\(text.prefix(400))")
        #expect(text.contains("/model/model.layers.0.self_attn.kv_a_proj_with_mqa.weight"))
    }

    @Test func badFilesGetOneClearError() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try CheckpointStore.save(try HFDirectory.load(Self.fixture, positions: 8), to: "\(dir)/ck.h5")
        let full = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/ck.h5"))
        try full.prefix(full.count / 2).write(to: URL(fileURLWithPath: "\(dir)/truncated.h5"))
        #expect(throws: CheckpointError.self) { try CheckpointStore.load("\(dir)/truncated.h5") }
        try Data("not hdf5 at all".utf8).write(to: URL(fileURLWithPath: "\(dir)/text.h5"))
        do {
            _ = try CheckpointStore.load("\(dir)/text.h5")
            Issue.record("accepted a text file")
        } catch let e as CheckpointError {
            #expect(e.description.contains("text.h5") && e.description.contains("not an HDF5 file"))
        }
        let foreign = try HDF5File.create("\(dir)/foreign.h5")
        try foreign.write("/data", Tensor([1, 2], shape: [2]))
        try foreign.close()
        do {
            _ = try CheckpointStore.load("\(dir)/foreign.h5")
            Issue.record("accepted a foreign HDF5 file")
        } catch let e as CheckpointError {
            #expect(e.description.contains("not a DeepTrain checkpoint"))
        }
    }

    @Test func safetensorsReadsHalfPrecisionAndRejectsTruncation() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Hand-built file: "a" F16 [2] = [1.5, -2], "b" BF16 [2] = [1, 0.5].
        let header = #"{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[4,8]}}"#
        var data = Data()
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: Array(header.utf8))
        for h in [Float16(1.5), Float16(-2)] { withUnsafeBytes(of: h.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        for f in [Float(1), Float(0.5)] { withUnsafeBytes(of: UInt16(f.bitPattern >> 16).littleEndian) { data.append(contentsOf: $0) } }
        try data.write(to: URL(fileURLWithPath: "\(dir)/half.safetensors"))
        let st = try SafeTensorsFile(path: "\(dir)/half.safetensors")
        #expect(try st.tensor("a").values == [1.5, -2])
        #expect(try st.tensor("b").values == [1, 0.5])
        try data.prefix(data.count - 2).write(to: URL(fileURLWithPath: "\(dir)/cut.safetensors"))
        do {
            _ = try SafeTensorsFile(path: "\(dir)/cut.safetensors")
            Issue.record("accepted a truncated file")
        } catch let e as CheckpointError {
            #expect(e.description.contains("\"b\"") && e.description.contains("truncated"), "\(e)")
        }
    }

    @Test func mismatchedWeightsAreRejectedAndNothingIsWritten() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A config whose hidden size disagrees with the weights.
        try FileManager.default.createDirectory(atPath: "\(dir)/hf", withIntermediateDirectories: true)
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(Self.fixture)/config.json"))) as! [String: Any]
        json["hidden_size"] = 40
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: "\(dir)/hf/config.json"))
        try FileManager.default.copyItem(atPath: "\(Self.fixture)/model.safetensors", toPath: "\(dir)/hf/model.safetensors")
        do {
            _ = try HFDirectory.load("\(dir)/hf")
            Issue.record("accepted mismatched weights")
        } catch let e as CheckpointError {
            #expect(e.description.contains("shape") && e.description.contains("config.json"), "\(e)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["hf"])
    }
}

/// What ranks write and read of a checkpoint without a gather: element ranges of a dataset, cut
/// across rows anywhere, land exactly where a whole-tensor write puts them.
@Suite struct CheckpointSliceTests {
    @Test func flatRangesOfMatricesAndVectorsWriteAndReadInPlace() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dt-slices-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/s.h5"
        let matrix = Tensor((0..<(7 * 5)).map { Float($0) + 0.5 }, shape: [7, 5])
        let vector = Tensor((0..<9).map { -Float($0) }, shape: [9])
        let f = try HDF5File.create(path)
        try f.createFloats("/m", shape: [7, 5])
        try f.createFloats("/v", shape: [9])
        try f.close()
        // Ranges as ZeRO shards cut them: mid-row starts and ends, whole rows, a single element.
        let cuts: [(String, Tensor, [Range<Int>])] = [("/m", matrix, [0..<3, 3..<4, 4..<17, 17..<20, 20..<35]),
                                                     ("/v", vector, [0..<4, 4..<9])]
        for (name, t, ranges) in cuts {
            for r in ranges.reversed() {  // any order: each rank takes its turn
                let w = try HDF5File.openForWriting(path)
                try w.writeFloats(name, range: r, from: t.data + r.lowerBound)
                try w.close()
            }
        }
        let back = try HDF5File.open(path)
        defer { try? back.close() }
        #expect(try back.readTensor("/m").values == matrix.values)
        #expect(try back.readTensor("/v").values == vector.values)
        var part = [Float](repeating: 0, count: 11)
        try part.withUnsafeMutableBufferPointer { try back.readFloats("/m", range: 12..<23, into: $0.baseAddress!) }
        #expect(part == Array(matrix.values[12..<23]))
        #expect(throws: CheckpointError.self) {
            try part.withUnsafeMutableBufferPointer { try back.readFloats("/m", range: 30..<41, into: $0.baseAddress!) }
        }
    }
}
