import Foundation
import Testing
import CHDF5
@testable import Checkpoint
@testable import FileFormats
@testable import DeepSeek
import FileSafety

/// Files crafted the way a fuzzer or an attacker makes them: each class of damage that once
/// crashed, hung or over-allocated gets one clear error naming the file and the object.
@Suite struct HostileFileTests {
    static let fixture = CheckpointStoreTests.fixture

    func tempDir() -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("dt-hostile-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    /// A valid checkpoint of the fixture model, then `edit` applied to it through the C API.
    func damagedCheckpoint(in dir: String, _ edit: (hid_t) -> Void) throws -> String {
        let path = "\(dir)/ck.h5"
        try CheckpointStore.save(try HFDirectory.load(Self.fixture, positions: 8), to: path)
        let f = H5Fopen(path, deeptrain_h5f_acc_rdwr(), hid_t(H5P_DEFAULT))
        #expect(f >= 0)
        edit(f)
        H5Fclose(f)
        return path
    }

    /// Replaces attribute `/state@name` with an array of `count` values of `type`.
    func arrayAttribute(_ f: hid_t, _ name: String, type: hid_t, count: Int) {
        let state = H5Oopen(f, "/state", hid_t(H5P_DEFAULT))
        H5Adelete(state, name)
        var dims = [hsize_t(count)]
        let space = H5Screate_simple(1, &dims, nil)
        let a = H5Acreate2(state, name, type, space, hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT))
        let bytes = [UInt8](repeating: 0x41, count: count * H5Tget_size(type))
        _ = bytes.withUnsafeBytes { H5Awrite(a, type, $0.baseAddress!) }
        H5Aclose(a)
        H5Sclose(space)
        H5Oclose(state)
    }

    func expectCheckpointError(_ path: String, containing: String) {
        do {
            _ = try CheckpointStore.Reader(path)
            Issue.record("\(path) was accepted")
        } catch let e as CheckpointError {
            #expect(e.description.contains(containing), "\(e)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func scalarAttributesStoredAsArraysAreRefused() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let step = try damagedCheckpoint(in: dir) { arrayAttribute($0, "step", type: deeptrain_h5t_native_int64(), count: 4096) }
        expectCheckpointError(step, containing: "/state@step holds 4096 values; expected one")
        let version = try damagedCheckpoint(in: dir) { arrayAttribute($0, "format_version", type: deeptrain_h5t_native_int64(), count: 3) }
        expectCheckpointError(version, containing: "/state@format_version holds 3 values")
        let format = try damagedCheckpoint(in: dir) { f in
            let type = H5Tcopy(deeptrain_h5t_c_s1())
            H5Tset_size(type, 20)
            arrayAttribute(f, "stage", type: type, count: 1000)
            H5Tclose(type)
        }
        expectCheckpointError(format, containing: "/state@stage holds 1000 values")
    }

    @Test func aDatasetWhoseShapeClaimsMoreThanItStoresIsRefused() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A 2^31 × 2^31 float dataset declared in a file of a few KB: chunked, never written.
        let path = try damagedCheckpoint(in: dir) { f in
            H5Ldelete(f, "/model/model.norm.weight", hid_t(H5P_DEFAULT))
            var dims: [hsize_t] = [1 << 31, 1 << 31], chunk: [hsize_t] = [64, 64]
            let space = H5Screate_simple(2, &dims, nil)
            let dcpl = H5Pcreate(deeptrain_h5p_dataset_create())
            H5Pset_chunk(dcpl, 2, &chunk)
            let ds = H5Dcreate2(f, "/model/model.norm.weight", deeptrain_h5t_native_float(), space, hid_t(H5P_DEFAULT), dcpl, hid_t(H5P_DEFAULT))
            H5Dclose(ds)
            H5Pclose(dcpl)
            H5Sclose(space)
        }
        let r = try CheckpointStore.Reader(path)
        defer { r.close() }
        #expect(throws: CheckpointError.self) { _ = try r.tensor("model.norm.weight") }
        do { _ = try r.tensor("model.norm.weight") } catch let e as CheckpointError {
            #expect(e.description.contains("model.norm.weight"), "\(e)")
        }
    }

    @Test func safetensorsShapesThatOverflowAreRefused() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // 2^62 × 4 elements of 4 bytes wrap to 0 bytes in unchecked Int arithmetic.
        let shapes = ["[4611686018427387904, 4]", "[-1, 8]", "[3037000500, 3037000500]", "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]"]
        for shape in shapes {
            let header = "{\"w\": {\"dtype\": \"F32\", \"shape\": \(shape), \"data_offsets\": [0, 0]}}"
            var data = Data()
            withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { data.append(contentsOf: $0) }
            data.append(Data(header.utf8))
            try data.write(to: URL(fileURLWithPath: "\(dir)/x.safetensors"))
            #expect(throws: CheckpointError.self, "shape \(shape)") { _ = try SafeTensorsFile(path: "\(dir)/x.safetensors") }
        }
    }

    @Test func configSizesAreBoundedBeforeAnythingIsAllocated() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(Self.fixture)/config.json"))) as! [String: Any]
        let cases: [(String, Any)] = [("hidden_size", 10_000_000), ("vocab_size", 1 << 31), ("num_hidden_layers", 10_000_000),
                                      ("n_routed_experts", 1 << 20), ("max_position_embeddings", 1 << 40), ("rms_norm_eps", -1.0)]
        for (key, value) in cases {
            var json = base
            json[key] = value
            try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: "\(dir)/config.json"))
            do {
                _ = try DeepSeekConfig.load("\(dir)/config.json")
                Issue.record("\(key) = \(value) accepted")
            } catch let e as ConfigError {
                #expect(e.key == key, "\(e)")
            }
        }
        // A 2 MB config is refused before it is parsed.
        try Data(repeating: 0x20, count: 2 << 20).write(to: URL(fileURLWithPath: "\(dir)/config.json"))
        #expect(throws: ConfigError.self) { _ = try DeepSeekConfig.load("\(dir)/config.json") }
    }

    @Test func errorMessagesQuoteAtMostAFewHundredCharactersOfAValue() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(Self.fixture)/config.json"))) as! [String: Any]
        json["model_type"] = String(repeating: "x", count: 500_000)
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: "\(dir)/config.json"))
        do {
            _ = try DeepSeekConfig.load("\(dir)/config.json")
            Issue.record("accepted")
        } catch let e as ConfigError {
            #expect(e.description.count < 400 && e.description.contains("500000 bytes"), "\(e.description.count) characters")
        }
    }

    @Test func anIndexCannotPointOutsideItsDirectory() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: Self.fixture, toPath: "\(dir)/hf")
        let index = "{\"metadata\": {}, \"weight_map\": {\"model.norm.weight\": \"../../etc/passwd.safetensors\"}}"
        try Data(index.utf8).write(to: URL(fileURLWithPath: "\(dir)/hf/model.safetensors.index.json"))
        do {
            _ = try HFDirectory.Weights("\(dir)/hf")
            Issue.record("accepted")
        } catch let e as CheckpointError {
            #expect(e.description.contains("expected a .safetensors file name in the same directory"), "\(e)")
        }
    }

    /// A conversion that fails half-way (a tensor unreadable after the directory was begun)
    /// leaves neither the destination nor its staging directory.
    @Test func aFailedConversionLeavesNothing() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try HFDirectory.load(Self.fixture, positions: 8)
        let shapes = DeepSeekForCausalLM.parameterShapes(model.config)
        let last = shapes.last!.name
        let named = Dictionary(model.namedParameters(), uniquingKeysWith: { a, _ in a })
        #expect(throws: CheckpointError.self) {
            try HFDirectory.save(config: model.config, parameters: shapes, to: "\(dir)/out", tokenizerFiles: [("tokenizer.json", Data("{}".utf8))]) { name in
                if name == last { throw CheckpointError("src.h5", "tensor \(name) is unreadable") }
                return named[name]!
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == [])
        // An existing directory with a user's own files is never replaced.
        try FileManager.default.createDirectory(atPath: "\(dir)/mine", withIntermediateDirectories: true)
        try Data("notes".utf8).write(to: URL(fileURLWithPath: "\(dir)/mine/notes.txt"))
        #expect(throws: AtomicDirectoryError.self) { try HFDirectory.save(model, to: "\(dir)/mine") }
        #expect(FileManager.default.fileExists(atPath: "\(dir)/mine/notes.txt"))
    }
}
