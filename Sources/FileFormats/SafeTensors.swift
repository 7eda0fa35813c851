import Foundation
import Autograd
import FileSafety

/// A bad or unreadable file: names the file, what is wrong, and what was expected.
package struct CheckpointError: Error, CustomStringConvertible, Equatable {
    package let path: String
    package let message: String
    package init(_ path: String, _ message: String) {
        self.path = path
        self.message = message
    }
    package var description: String { "\(path): \(message)" }
}

/// The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header
/// mapping names to dtype, shape and byte offsets, then the raw little-endian data. Files are
/// memory-mapped; F32, F16 and BF16 read as float32, I64 and I32 as integers.
package struct SafeTensorsFile {
    package struct Entry: Equatable {
        package let dtype: String
        package let shape: [Int]
        package let range: Range<Int>
    }

    package let path: String
    package let entries: [String: Entry]
    package let metadata: [String: String]
    let data: Data
    let dataStart: Int

    static let maxRank = 16
    static let sizes = ["F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "F64": 8, "U8": 1, "I8": 1, "BOOL": 1]

    package init(path: String) throws {
        self.path = path
        guard let d = try? Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) else {
            throw CheckpointError(path, "cannot be read")
        }
        data = d
        guard d.count >= 8 else { throw CheckpointError(path, "is \(d.count) bytes: too short for a safetensors header") }
        // The length is compared as read (UInt64): a value past Int.max must not trap on conversion.
        let declared = d.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        let n = Int(truncatingIfNeeded: Swift.min(declared, UInt64(Int.max)))
        guard n > 1, n <= d.count - 8, n < 100 << 20 else {
            throw CheckpointError(path, "header length \(n) does not fit a file of \(d.count) bytes: not a safetensors file, or truncated")
        }
        dataStart = 8 + n
        guard let json = try? JSONSerialization.jsonObject(with: d.subdata(in: 8..<(8 + n))) as? [String: Any] else {
            throw CheckpointError(path, "header is not a JSON object: not a safetensors file")
        }
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        let payload = d.count - dataStart
        for (name, value) in json {
            if name == "__metadata__" {
                metadata = (value as? [String: String]) ?? [:]
                continue
            }
            let label = quoted(name)
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int], let offs = info["data_offsets"] as? [Int], offs.count == 2 else {
                throw CheckpointError(path, "header entry \(label) needs dtype, shape and data_offsets")
            }
            guard let size = SafeTensorsFile.sizes[dtype] else {
                throw CheckpointError(path, "tensor \(label) has dtype \(quoted(dtype)); supported: F32, F16, BF16, I64, I32")
            }
            // The byte count is computed with overflow checks: a wrapped product would pass the
            // size check below and send a read past the mapping.
            guard shape.count <= SafeTensorsFile.maxRank, let count = checkedProduct(shape),
                  case let (bytes, overflow) = count.multipliedReportingOverflow(by: size), !overflow else {
                throw CheckpointError(path, "tensor \(label) has shape \(quoted("\(shape)")): not a valid shape (rank at most \(SafeTensorsFile.maxRank), no negative dimension, at most Int.max bytes)")
            }
            guard offs[0] >= 0, offs[1] >= offs[0], offs[1] - offs[0] == bytes, offs[1] <= payload else {
                throw CheckpointError(path, "tensor \(label) (\(dtype) \(shape), \(bytes) bytes) has offsets \(offs) outside the \(payload) data bytes: truncated or corrupt")
            }
            entries[name] = Entry(dtype: dtype, shape: shape, range: offs[0]..<offs[1])
        }
        self.entries = entries
        self.metadata = metadata
    }

    package var names: [String] { entries.keys.sorted() }

    package func entry(_ name: String) throws -> Entry {
        guard let e = entries[name] else { throw CheckpointError(path, "has no tensor \"\(name)\"") }
        return e
    }

    /// A float tensor (F32, F16 or BF16 converted to float32).
    package func tensor(_ name: String) throws -> Tensor {
        let e = try entry(name)
        let out = Tensor(uninitialized: e.shape)
        let n = out.count, o = out.data
        data.withUnsafeBytes { raw in
            let base = raw.baseAddress! + dataStart + e.range.lowerBound
            switch e.dtype {
            case "F32":
                for i in 0..<n { o[i] = Float(bitPattern: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            case "BF16":
                for i in 0..<n { o[i] = Float(bitPattern: UInt32(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
            case "F16":
                for i in 0..<n { o[i] = Float(Float16(bitPattern: UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))) }
            case "F64":
                for i in 0..<n { o[i] = Float(Double(bitPattern: UInt64(littleEndian: base.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
            default:
                break
            }
        }
        guard ["F32", "BF16", "F16", "F64"].contains(e.dtype) else {
            throw CheckpointError(path, "tensor \"\(name)\" is \(e.dtype); expected a float dtype (F32, F16, BF16)")
        }
        release(e.range)
        return out
    }

    /// Hands the mapped pages of a tensor already copied out back to the kernel: a mapped file's
    /// pages count as resident once read, so a conversion streaming a large model tensor by
    /// tensor would otherwise grow to the size of the file.
    func release(_ range: Range<Int>) {
        let page = Int(getpagesize())
        data.withUnsafeBytes { raw in
            let start = Int(bitPattern: raw.baseAddress!) + dataStart + range.lowerBound
            let lo = (start + page - 1) / page * page, hi = (start + range.count) / page * page
            if hi > lo { _ = madvise(UnsafeMutableRawPointer(bitPattern: lo), hi - lo, MADV_DONTNEED) }
        }
    }

    /// An integer tensor (I64 or I32) as row-major values and its shape.
    package func integers(_ name: String) throws -> (values: [Int], shape: [Int]) {
        let e = try entry(name)
        let n = e.shape.reduce(1, *)
        var values = [Int](repeating: 0, count: n)
        switch e.dtype {
        case "I64":
            data.withUnsafeBytes { raw in
                let base = raw.baseAddress! + dataStart + e.range.lowerBound
                for i in 0..<n { values[i] = Int(Int64(littleEndian: base.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
            }
        case "I32":
            data.withUnsafeBytes { raw in
                let base = raw.baseAddress! + dataStart + e.range.lowerBound
                for i in 0..<n { values[i] = Int(Int32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
            }
        default:
            throw CheckpointError(path, "tensor \"\(name)\" is \(e.dtype); expected I64 or I32")
        }
        return (values, e.shape)
    }

    /// One tensor to write: float32 data, float32 data stored as bfloat16, or int64 values.
    package enum Item {
        case float(Tensor)
        case bfloat16(Tensor)
        case int64([Int], shape: [Int])
    }

    /// bfloat16 by round-to-nearest-even, as PyTorch's `tensor.to(torch.bfloat16)` rounds (NaN stays NaN).
    package static func bfloat16Bits(_ x: Float) -> UInt16 { BFloat16.bits(x) }

    /// Writes tensors (sorted by name) atomically: to `path.tmp`, then renamed.
    package static func write(_ path: String, _ items: [(String, Item)], metadata: [String: String] = [:]) throws {
        let byName = Dictionary(items, uniquingKeysWith: { a, _ in a })
        try write(path, items.map { (name, item) -> Planned in
            switch item {
            case .float(let t): return Planned(name: name, dtype: "F32", shape: t.shape)
            case .bfloat16(let t): return Planned(name: name, dtype: "BF16", shape: t.shape)
            case .int64(_, let s): return Planned(name: name, dtype: "I64", shape: s)
            }
        }, metadata: metadata) { byName[$0]! }
    }

    /// A tensor of a file being written: its header entry, before its values exist.
    package struct Planned {
        package let name: String, dtype: String, shape: [Int]
        package init(name: String, dtype: String, shape: [Int]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
        }
    }

    /// Streams a file: the header from `planned`, then each tensor's bytes as `item(name)` makes
    /// it, one at a time (memory: one tensor, not the file). Atomic like `atomicWrite`.
    package static func write(_ path: String, _ planned: [Planned], metadata: [String: String] = [:],
                             item: (String) throws -> Item) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        let sorted = planned.sorted { $0.name < $1.name }
        for p in sorted {
            let bytes = p.shape.reduce(1, *) * sizes[p.dtype]!
            header[p.name] = ["dtype": p.dtype, "shape": p.shape, "data_offsets": [offset, offset + bytes]]
            offset += bytes
        }
        var headerData = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while (8 + headerData.count) % 8 != 0 { headerData.append(0x20) }  // pad with spaces
        var head = Data()
        withUnsafeBytes(of: UInt64(headerData.count).littleEndian) { head.append(contentsOf: $0) }
        head.append(headerData)
        try atomicWrite(to: path) { h in
            try h.write(contentsOf: head)
            for p in sorted {
                // Each tensor's little-endian bytes go to the file without a further copy.
                func put(_ b: UnsafeRawBufferPointer) throws {
                    guard b.count == p.shape.reduce(1, *) * sizes[p.dtype]! else {
                        throw CheckpointError(path, "tensor \"\(p.name)\" came as \(b.count) bytes; its header entry says \(p.dtype) \(p.shape)")
                    }
                    guard let base = b.baseAddress else { return }
                    try h.write(contentsOf: Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: base), count: b.count, deallocator: .none))
                }
                switch try item(p.name) {
                case .float(let t):
                    let c = t.isContiguous ? t : t.clone()
                    var le = [UInt32](repeating: 0, count: c.count)
                    for i in 0..<c.count { le[i] = c.data[i].bitPattern.littleEndian }
                    try le.withUnsafeBytes(put)
                case .bfloat16(let t):
                    let c = t.isContiguous ? t : t.clone()
                    var le = [UInt16](repeating: 0, count: c.count)
                    for i in 0..<c.count { le[i] = bfloat16Bits(c.data[i]).littleEndian }
                    try le.withUnsafeBytes(put)
                case .int64(let v, _):
                    let le = v.map { Int64($0).littleEndian }
                    try le.withUnsafeBytes(put)
                }
            }
        }
    }
}

/// Writes `data` to `path.tmp`, fsyncs it, and renames it over `path`: a crash leaves either
/// the old file or the new one, never half of one.
package func atomicWrite(_ data: Data, to path: String) throws {
    try atomicWrite(to: path) { try $0.write(contentsOf: data) }
}

/// `atomicWrite` with the contents written by `body` piece by piece.
package func atomicWrite(to path: String, _ body: (FileHandle) throws -> Void) throws {
    let tmp = path + ".tmp"
    guard FileManager.default.createFile(atPath: tmp, contents: nil) else {
        throw CheckpointError(path, "cannot create \(tmp)")
    }
    do {
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp))
        do {
            try body(h)
            try h.synchronize()
            try h.close()
        } catch {
            try? h.close()
            throw error
        }
        if rename(tmp, path) != 0 { throw CheckpointError(path, "cannot rename \(tmp) into place (errno \(errno))") }
    } catch {
        try? FileManager.default.removeItem(atPath: tmp)
        throw error as? CheckpointError ?? CheckpointError(path, "write failed: \(error)")
    }
}

extension CheckpointError: InputError {}
