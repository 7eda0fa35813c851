import Foundation
import CHDF5
import Autograd

/// A thin, checked wrapper over the HDF5 C API for what checkpoints need: groups, float32 and
/// int64 datasets, string and integer attributes. Every failing call becomes a
/// `CheckpointError` naming the file and the object.
public final class HDF5File {
    public let path: String
    let id: hid_t
    static let defaultPL = hid_t(H5P_DEFAULT)

    /// HDF5 prints its own error stack by default; we report errors ourselves. Set on every
    /// open: a thread-safe libhdf5 keeps the setting per thread.
    static var quiet: Void { H5Eset_auto2(hid_t(H5E_DEFAULT), nil, nil) }

    private init(path: String, id: hid_t) {
        self.path = path
        self.id = id
    }

    public static func create(_ path: String) throws -> HDF5File {
        _ = quiet
        let fapl = deeptrain_h5p_write_access()
        defer { if fapl >= 0 { H5Pclose(fapl) } }
        let id = H5Fcreate(path, deeptrain_h5f_acc_trunc(), defaultPL, fapl >= 0 ? fapl : defaultPL)
        guard id >= 0 else { throw CheckpointError(path, "cannot be created as an HDF5 file") }
        return HDF5File(path: path, id: id)
    }

    public static func open(_ path: String) throws -> HDF5File {
        _ = quiet
        guard FileManager.default.fileExists(atPath: path) else { throw CheckpointError(path, "does not exist") }
        guard H5Fis_hdf5(path) > 0 else {
            throw CheckpointError(path, "is not an HDF5 file (or its superblock is damaged)")
        }
        let id = H5Fopen(path, deeptrain_h5f_acc_rdonly(), defaultPL)
        guard id >= 0 else { throw CheckpointError(path, "cannot be opened: truncated or corrupt HDF5 file") }
        return HDF5File(path: path, id: id)
    }

    /// An existing file opened to write more into (a checkpoint's ranks take turns this way).
    public static func openForWriting(_ path: String) throws -> HDF5File {
        _ = quiet
        guard FileManager.default.fileExists(atPath: path) else { throw CheckpointError(path, "does not exist") }
        let fapl = deeptrain_h5p_write_access()
        defer { if fapl >= 0 { H5Pclose(fapl) } }
        let id = H5Fopen(path, deeptrain_h5f_acc_rdwr(), fapl >= 0 ? fapl : defaultPL)
        guard id >= 0 else { throw CheckpointError(path, "cannot be opened for writing") }
        return HDF5File(path: path, id: id)
    }

    public func close() throws {
        guard H5Fclose(id) >= 0 else { throw CheckpointError(path, "could not be closed cleanly") }
    }

    public func flush() throws {
        guard H5Fflush(id, H5F_SCOPE_GLOBAL) >= 0 else { throw CheckpointError(path, "flush failed") }
    }

    public func createGroup(_ name: String) throws {
        let g = H5Gcreate2(id, name, HDF5File.defaultPL, HDF5File.defaultPL, HDF5File.defaultPL)
        guard g >= 0 else { throw CheckpointError(path, "cannot create group \(name)" + writeFailureReason()) }
        H5Gclose(g)
    }

    public func exists(_ name: String) -> Bool { H5Lexists(id, name, HDF5File.defaultPL) > 0 }

    /// Names of the objects in a group, sorted.
    public func list(_ group: String) throws -> [String] {
        let g = H5Gopen2(id, group, HDF5File.defaultPL)
        guard g >= 0 else { throw CheckpointError(path, "has no group \(group)") }
        defer { H5Gclose(g) }
        var info = H5G_info_t()
        guard H5Gget_info(g, &info) >= 0 else { throw CheckpointError(path, "cannot list \(group)") }
        var names: [String] = []
        for i in 0..<info.nlinks {
            let n = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, HDF5File.defaultPL)
            guard n >= 0 else { throw CheckpointError(path, "cannot read the name of entry \(i) of \(group)") }
            var buf = [CChar](repeating: 0, count: Int(n) + 1)
            H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, Int(n) + 1, HDF5File.defaultPL)
            names.append(String(decoding: buf.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return names.sorted()
    }

    // MARK: datasets

    public func write(_ name: String, _ t: Tensor) throws {
        let c = t.isContiguous ? t : t.clone()
        try writeRaw(name, shape: t.shape, type: deeptrain_h5t_native_float(), bytes: UnsafeRawPointer(c.data))
    }

    public func write(_ name: String, int64 values: [Int64], shape: [Int]) throws {
        try values.withUnsafeBytes { try writeRaw(name, shape: shape, type: deeptrain_h5t_native_int64(), bytes: $0.baseAddress!) }
    }

    /// A file's bytes as a uint8 dataset (tokenizer files travel inside checkpoints this way:
    /// attributes are limited to 64 KiB, a tokenizer.json is megabytes).
    public func write(_ name: String, bytes: [UInt8]) throws {
        let b = bytes.isEmpty ? [UInt8(0)] : bytes
        try b.withUnsafeBytes { try writeRaw(name, shape: [b.count], type: deeptrain_h5t_native_uint8(), bytes: $0.baseAddress!) }
        try setAttribute(name, "length", int: Int64(bytes.count))
    }

    public func readBytes(_ name: String) throws -> [UInt8] {
        let s = try shape(name)
        var v = [UInt8](repeating: 0, count: s.reduce(1, *))
        try v.withUnsafeMutableBytes { try readRaw(name, type: deeptrain_h5t_native_uint8(), into: $0.baseAddress!) }
        let length = Int((try? intAttribute(name, "length")) ?? Int64(v.count))
        return Array(v.prefix(length))
    }

    func writeRaw(_ name: String, shape: [Int], type: hid_t, bytes: UnsafeRawPointer) throws {
        var dims = shape.map { hsize_t($0) }
        let space = shape.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(shape.count), &dims, nil)
        guard space >= 0 else { throw CheckpointError(path, "cannot make a dataspace for \(name) \(shape)") }
        defer { H5Sclose(space) }
        let ds = H5Dcreate2(id, name, type, space, HDF5File.defaultPL, HDF5File.defaultPL, HDF5File.defaultPL)
        guard ds >= 0 else { throw CheckpointError(path, "cannot create dataset \(name)" + writeFailureReason()) }
        defer { H5Dclose(ds) }
        guard H5Dwrite(ds, type, hid_t(H5S_ALL), hid_t(H5S_ALL), HDF5File.defaultPL, bytes) >= 0 else {
            throw CheckpointError(path, "cannot write dataset \(name)" + writeFailureReason())
        }
    }

    /// A float32 dataset of `shape` whose elements are written later, in slices.
    public func createFloats(_ name: String, shape: [Int]) throws {
        var dims = shape.map { hsize_t($0) }
        let space = H5Screate_simple(Int32(dims.count), &dims, nil)
        guard space >= 0 else { throw CheckpointError(path, "cannot make a dataspace for \(name) \(shape)") }
        defer { H5Sclose(space) }
        let ds = H5Dcreate2(id, name, deeptrain_h5t_native_float(), space, HDF5File.defaultPL, HDF5File.defaultPL, HDF5File.defaultPL)
        guard ds >= 0 else { throw CheckpointError(path, "cannot create dataset \(name)" + writeFailureReason()) }
        H5Dclose(ds)
    }

    /// Elements `range` of a float32 dataset, in row-major order, from `values`.
    public func writeFloats(_ name: String, range: Range<Int>, from values: UnsafePointer<Float>) throws {
        try slice(name, range) { ds, mem, file in
            H5Dwrite(ds, deeptrain_h5t_native_float(), mem, file, HDF5File.defaultPL, values) >= 0
        } failure: { "cannot write elements \(range) of \(name)" + writeFailureReason() }
    }

    /// Elements `range` of a float32 dataset, in row-major order, into `buffer`.
    public func readFloats(_ name: String, range: Range<Int>, into buffer: UnsafeMutablePointer<Float>) throws {
        try slice(name, range) { ds, mem, file in
            H5Dread(ds, deeptrain_h5t_native_float(), mem, file, HDF5File.defaultPL, buffer) >= 0
        } failure: { "cannot read elements \(range) of \(name): truncated or corrupt" }
    }

    /// Opens `name`, selects the flat element range in its dataspace (as a union of hyperslabs:
    /// a partial row, whole rows, a partial row, recursively) and runs `io` on it.
    /// Why a write may have failed, as far as the system says: the error of the last system
    /// call, and the file system's free space when it is nearly full (a full disk is the usual
    /// cause; HDF5's own error stack is silenced).
    func writeFailureReason() -> String {
        // Only errors a write makes: errno may be left over from an unrelated earlier call.
        let code = errno
        var parts: [String] = []
        if [ENOSPC, EDQUOT, EIO, EFBIG, EROFS].contains(code) { parts.append(String(cString: strerror(code))) }
        var fs = statvfs()
        let dir = (path as NSString).deletingLastPathComponent
        if statvfs(dir.isEmpty ? "." : dir, &fs) == 0 {
            let free = Double(fs.f_bavail) * Double(fs.f_frsize)
            if free < Double(1 << 30) { parts.append(String(format: "%.0f MiB free on its file system", free / 1_048_576)) }
        }
        return parts.isEmpty ? "" : " (" + parts.joined(separator: "; ") + ")"
    }

    func slice(_ name: String, _ range: Range<Int>, _ io: (hid_t, hid_t, hid_t) -> Bool, failure: () -> String) throws {
        let ds = H5Dopen2(id, name, HDF5File.defaultPL)
        guard ds >= 0 else { throw CheckpointError(path, "has no dataset \(name)") }
        defer { H5Dclose(ds) }
        let shape = try self.shape(name)
        let total = shape.reduce(1, *)
        guard range.lowerBound >= 0, range.upperBound <= total else {
            throw CheckpointError(path, "\(name) has \(total) elements; elements \(range) were asked for")
        }
        if range.isEmpty { return }
        let file = H5Dget_space(ds)
        defer { H5Sclose(file) }
        var n = [hsize_t(range.count)]
        let mem = H5Screate_simple(1, &n, nil)
        defer { H5Sclose(mem) }
        var first = true, ok = true
        func add(_ start: [Int], _ count: [Int]) {
            var st = start.map { hsize_t($0) }, ct = count.map { hsize_t($0) }
            if H5Sselect_hyperslab(file, first ? H5S_SELECT_SET : H5S_SELECT_OR, &st, nil, &ct, nil) < 0 { ok = false }
            first = false
        }
        let dims = shape.isEmpty ? [1] : shape
        func select(_ prefix: [Int], _ d: ArraySlice<Int>, _ lo: Int, _ hi: Int) {
            if lo >= hi { return }
            let ones = [Int](repeating: 1, count: prefix.count)
            if d.count == 1 { add(prefix + [lo], ones + [hi - lo]); return }
            let inner = d.dropFirst().reduce(1, *), rest = Array(d.dropFirst())
            var a = lo
            if a % inner != 0 {
                let r = a / inner, end = Swift.min(hi, (r + 1) * inner)
                select(prefix + [r], d.dropFirst(), a - r * inner, end - r * inner)
                a = end
            }
            let whole = hi / inner * inner
            if a < whole {
                add(prefix + [a / inner] + [Int](repeating: 0, count: rest.count), ones + [(whole - a) / inner] + rest)
                a = whole
            }
            if a < hi { select(prefix + [a / inner], d.dropFirst(), 0, hi - a) }
        }
        select([], dims[...], range.lowerBound, range.upperBound)
        guard ok, io(ds, mem, file) else { throw CheckpointError(path, failure()) }
    }

    public func shape(_ name: String) throws -> [Int] {
        let ds = H5Dopen2(id, name, HDF5File.defaultPL)
        guard ds >= 0 else { throw CheckpointError(path, "has no dataset \(name)") }
        defer { H5Dclose(ds) }
        let space = H5Dget_space(ds)
        defer { H5Sclose(space) }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        guard rank >= 0 else { throw CheckpointError(path, "dataset \(name) has no readable shape") }
        var dims = [hsize_t](repeating: 0, count: Swift.max(rank, 1))
        H5Sget_simple_extent_dims(space, &dims, nil)
        return dims.prefix(rank).map { Int($0) }
    }

    public func readTensor(_ name: String) throws -> Tensor {
        let s = try shape(name)
        let t = Tensor(uninitialized: s)
        try readRaw(name, type: deeptrain_h5t_native_float(), into: UnsafeMutableRawPointer(t.data))
        return t
    }

    public func readInt64(_ name: String) throws -> [Int64] {
        let s = try shape(name)
        var v = [Int64](repeating: 0, count: s.reduce(1, *))
        try v.withUnsafeMutableBytes { try readRaw(name, type: deeptrain_h5t_native_int64(), into: $0.baseAddress!) }
        return v
    }

    func readRaw(_ name: String, type: hid_t, into buffer: UnsafeMutableRawPointer) throws {
        let ds = H5Dopen2(id, name, HDF5File.defaultPL)
        guard ds >= 0 else { throw CheckpointError(path, "has no dataset \(name)") }
        defer { H5Dclose(ds) }
        guard H5Dread(ds, type, hid_t(H5S_ALL), hid_t(H5S_ALL), HDF5File.defaultPL, buffer) >= 0 else {
            throw CheckpointError(path, "cannot read dataset \(name): truncated or corrupt")
        }
    }

    // MARK: attributes (on any object; "/" for the file)

    public func setAttribute(_ object: String, _ name: String, string: String) throws {
        let obj = H5Oopen(id, object, HDF5File.defaultPL)
        guard obj >= 0 else { throw CheckpointError(path, "has no object \(object)") }
        defer { H5Oclose(obj) }
        let type = H5Tcopy(deeptrain_h5t_c_s1())
        defer { H5Tclose(type) }
        let bytes = Array(string.utf8)
        H5Tset_size(type, Swift.max(bytes.count, 1))
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        let attr = H5Acreate2(obj, name, type, space, HDF5File.defaultPL, HDF5File.defaultPL)
        guard attr >= 0 else { throw CheckpointError(path, "cannot create attribute \(object)@\(name)" + writeFailureReason()) }
        defer { H5Aclose(attr) }
        let padded = bytes.isEmpty ? [UInt8(0)] : bytes
        guard padded.withUnsafeBytes({ H5Awrite(attr, type, $0.baseAddress!) }) >= 0 else {
            throw CheckpointError(path, "cannot write attribute \(object)@\(name)" + writeFailureReason())
        }
    }

    public func setAttribute(_ object: String, _ name: String, int: Int64) throws {
        let obj = H5Oopen(id, object, HDF5File.defaultPL)
        guard obj >= 0 else { throw CheckpointError(path, "has no object \(object)") }
        defer { H5Oclose(obj) }
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        let attr = H5Acreate2(obj, name, deeptrain_h5t_native_int64(), space, HDF5File.defaultPL, HDF5File.defaultPL)
        guard attr >= 0 else { throw CheckpointError(path, "cannot create attribute \(object)@\(name)" + writeFailureReason()) }
        defer { H5Aclose(attr) }
        var v = int
        guard H5Awrite(attr, deeptrain_h5t_native_int64(), &v) >= 0 else {
            throw CheckpointError(path, "cannot write attribute \(object)@\(name)" + writeFailureReason())
        }
    }

    public func stringAttribute(_ object: String, _ name: String) throws -> String {
        guard H5Aexists_by_name(id, object, name, HDF5File.defaultPL) > 0 else {
            throw CheckpointError(path, "has no attribute \(object)@\(name)")
        }
        let attr = H5Aopen_by_name(id, object, name, HDF5File.defaultPL, HDF5File.defaultPL)
        guard attr >= 0 else { throw CheckpointError(path, "cannot open attribute \(object)@\(name)") }
        defer { H5Aclose(attr) }
        let type = H5Aget_type(attr)
        defer { H5Tclose(type) }
        guard H5Tget_class(type) == H5T_STRING else { throw CheckpointError(path, "attribute \(object)@\(name) is not a string") }
        let size = H5Tget_size(type)
        var buf = [UInt8](repeating: 0, count: size + 1)
        guard H5Aread(attr, type, &buf) >= 0 else { throw CheckpointError(path, "cannot read attribute \(object)@\(name)") }
        return String(decoding: buf.prefix(while: { $0 != 0 }), as: UTF8.self)
    }

    public func intAttribute(_ object: String, _ name: String) throws -> Int64 {
        guard H5Aexists_by_name(id, object, name, HDF5File.defaultPL) > 0 else {
            throw CheckpointError(path, "has no attribute \(object)@\(name)")
        }
        let attr = H5Aopen_by_name(id, object, name, HDF5File.defaultPL, HDF5File.defaultPL)
        guard attr >= 0 else { throw CheckpointError(path, "cannot open attribute \(object)@\(name)") }
        defer { H5Aclose(attr) }
        var v: Int64 = 0
        guard H5Aread(attr, deeptrain_h5t_native_int64(), &v) >= 0 else {
            throw CheckpointError(path, "cannot read attribute \(object)@\(name)")
        }
        return v
    }
}
