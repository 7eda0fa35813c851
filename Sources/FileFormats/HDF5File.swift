import Foundation
import CHDF5
import Autograd
import FileSafety

/// A thin, checked wrapper over the HDF5 C API for what checkpoints need: groups, float32 and
/// int64 datasets, string and integer attributes. Every failing call becomes a
/// `CheckpointError` naming the file and the object.
package final class HDF5File {
    package let path: String
    let id: hid_t
    static let defaultPL = hid_t(H5P_DEFAULT)

    /// HDF5 prints its own error stack by default; we report errors ourselves. Set on every
    /// open: a thread-safe libhdf5 keeps the setting per thread.
    static var quiet: Void { H5Eset_auto2(hid_t(H5E_DEFAULT), nil, nil) }

    private init(path: String, id: hid_t) {
        self.path = path
        self.id = id
    }

    package static func create(_ path: String) throws -> HDF5File {
        _ = quiet
        let fapl = deeptrain_h5p_write_access()
        defer { if fapl >= 0 { H5Pclose(fapl) } }
        let id = H5Fcreate(path, deeptrain_h5f_acc_trunc(), defaultPL, fapl >= 0 ? fapl : defaultPL)
        guard id >= 0 else { throw CheckpointError(path, "cannot be created as an HDF5 file") }
        return HDF5File(path: path, id: id)
    }

    package static func open(_ path: String) throws -> HDF5File {
        _ = quiet
        guard FileManager.default.fileExists(atPath: path) else { throw CheckpointError(path, "does not exist") }
        guard H5Fis_hdf5(path) > 0 else {
            throw CheckpointError(path, "is not an HDF5 file (or its superblock is damaged)")
        }
        try HDF5Screen.screen(path)
        let id = H5Fopen(path, deeptrain_h5f_acc_rdonly(), defaultPL)
        guard id >= 0 else { throw CheckpointError(path, "cannot be opened: truncated or corrupt HDF5 file") }
        return HDF5File(path: path, id: id)
    }

    /// An existing file opened to write more into (a checkpoint's ranks take turns this way).
    package static func openForWriting(_ path: String) throws -> HDF5File {
        _ = quiet
        guard FileManager.default.fileExists(atPath: path) else { throw CheckpointError(path, "does not exist") }
        let fapl = deeptrain_h5p_write_access()
        defer { if fapl >= 0 { H5Pclose(fapl) } }
        let id = H5Fopen(path, deeptrain_h5f_acc_rdwr(), fapl >= 0 ? fapl : defaultPL)
        guard id >= 0 else { throw CheckpointError(path, "cannot be opened for writing") }
        return HDF5File(path: path, id: id)
    }

    package func close() throws {
        guard H5Fclose(id) >= 0 else { throw CheckpointError(path, "could not be closed cleanly") }
    }

    package func flush() throws {
        guard H5Fflush(id, H5F_SCOPE_GLOBAL) >= 0 else { throw CheckpointError(path, "flush failed") }
    }

    package func createGroup(_ name: String) throws {
        let g = H5Gcreate2(id, name, HDF5File.defaultPL, HDF5File.defaultPL, HDF5File.defaultPL)
        guard g >= 0 else { throw CheckpointError(path, "cannot create group \(name)" + writeFailureReason()) }
        H5Gclose(g)
    }

    package func exists(_ name: String) -> Bool { H5Lexists(id, name, HDF5File.defaultPL) > 0 }

    /// Names of the objects in a group, sorted.
    package func list(_ group: String) throws -> [String] {
        let g = H5Gopen2(id, group, HDF5File.defaultPL)
        guard g >= 0 else { throw CheckpointError(path, "has no group \(group)") }
        defer { H5Gclose(g) }
        var info = H5G_info_t()
        guard H5Gget_info(g, &info) >= 0 else { throw CheckpointError(path, "cannot list \(group)") }
        guard info.nlinks <= HDF5Limits.maxGroupEntries else {
            throw CheckpointError(path, "group \(group) has \(info.nlinks) entries; at most \(HDF5Limits.maxGroupEntries) are read")
        }
        var names: [String] = []
        for i in 0..<info.nlinks {
            let n = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, HDF5File.defaultPL)
            guard n >= 0, n <= HDF5Limits.maxNameBytes else {
                throw CheckpointError(path, "cannot read the name of entry \(i) of \(group) (length \(n))")
            }
            var buf = [CChar](repeating: 0, count: Int(n) + 1)
            H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, Int(n) + 1, HDF5File.defaultPL)
            names.append(String(decoding: buf.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return names.sorted()
    }

    // MARK: datasets

    package func write(_ name: String, _ t: Tensor) throws {
        let c = t.isContiguous ? t : t.clone()
        try writeRaw(name, shape: t.shape, type: deeptrain_h5t_native_float(), bytes: UnsafeRawPointer(c.data))
    }

    package func write(_ name: String, int64 values: [Int64], shape: [Int]) throws {
        try values.withUnsafeBytes { try writeRaw(name, shape: shape, type: deeptrain_h5t_native_int64(), bytes: $0.baseAddress!) }
    }

    /// A file's bytes as a uint8 dataset (tokenizer files travel inside checkpoints this way:
    /// attributes are limited to 64 KiB, a tokenizer.json is megabytes).
    package func write(_ name: String, bytes: [UInt8]) throws {
        let b = bytes.isEmpty ? [UInt8(0)] : bytes
        try b.withUnsafeBytes { try writeRaw(name, shape: [b.count], type: deeptrain_h5t_native_uint8(), bytes: $0.baseAddress!) }
        try setAttribute(name, "length", int: Int64(bytes.count))
    }

    package func readBytes(_ name: String) throws -> [UInt8] {
        let info = try dataset(name, expecting: .bytes)
        guard info.shape.count == 1, info.count <= HDF5Limits.maxByteDataset else {
            throw CheckpointError(path, "\(name) has shape \(info.shape); expected one dimension of at most \(HDF5Limits.maxByteDataset) bytes")
        }
        var v = [UInt8](repeating: 0, count: info.count)
        try v.withUnsafeMutableBytes { try readRaw(name, type: deeptrain_h5t_native_uint8(), into: $0.baseAddress!) }
        let length = exists(name) && H5Aexists_by_name(id, name, "length", HDF5File.defaultPL) > 0 ? try intAttribute(name, "length") : Int64(v.count)
        guard length >= 0, length <= Int64(v.count) else {
            throw CheckpointError(path, "\(name)@length is \(length); the dataset holds \(v.count) bytes")
        }
        return Array(v.prefix(Int(length)))
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
    package func createFloats(_ name: String, shape: [Int]) throws {
        var dims = shape.map { hsize_t($0) }
        let space = H5Screate_simple(Int32(dims.count), &dims, nil)
        guard space >= 0 else { throw CheckpointError(path, "cannot make a dataspace for \(name) \(shape)") }
        defer { H5Sclose(space) }
        let ds = H5Dcreate2(id, name, deeptrain_h5t_native_float(), space, HDF5File.defaultPL, HDF5File.defaultPL, HDF5File.defaultPL)
        guard ds >= 0 else { throw CheckpointError(path, "cannot create dataset \(name)" + writeFailureReason()) }
        H5Dclose(ds)
    }

    /// Elements `range` of a float32 dataset, in row-major order, from `values`.
    package func writeFloats(_ name: String, range: Range<Int>, from values: UnsafePointer<Float>) throws {
        try slice(name, range, reading: false) { ds, mem, file in
            H5Dwrite(ds, deeptrain_h5t_native_float(), mem, file, HDF5File.defaultPL, values) >= 0
        } failure: { "cannot write elements \(range) of \(name)" + writeFailureReason() }
    }

    /// Elements `range` of a float32 dataset, in row-major order, into `buffer`.
    package func readFloats(_ name: String, range: Range<Int>, into buffer: UnsafeMutablePointer<Float>) throws {
        try slice(name, range, reading: true) { ds, mem, file in
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

    func slice(_ name: String, _ range: Range<Int>, reading: Bool, _ io: (hid_t, hid_t, hid_t) -> Bool, failure: () -> String) throws {
        // A dataset being written in slices has no storage yet; one being read must have all of it.
        let info = try dataset(name, expecting: .float32, stored: reading)
        let ds = H5Dopen2(id, name, HDF5File.defaultPL)
        guard ds >= 0 else { throw CheckpointError(path, "has no dataset \(name)") }
        defer { H5Dclose(ds) }
        let shape = info.shape
        let total = info.count
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

    /// The dataset's shape, checked (rank and element count bounded, no overflow).
    package func shape(_ name: String) throws -> [Int] { try dataset(name, expecting: nil).shape }

    /// A float32 dataset read whole, after its type, shape and stored size were checked.
    package func readTensor(_ name: String) throws -> Tensor {
        let info = try dataset(name, expecting: .float32)
        let t = Tensor(uninitialized: info.shape)
        try readRaw(name, type: deeptrain_h5t_native_float(), into: UnsafeMutableRawPointer(t.data))
        return t
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

    package func setAttribute(_ object: String, _ name: String, string: String) throws {
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

    package func setAttribute(_ object: String, _ name: String, int: Int64) throws {
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

    package func stringAttribute(_ object: String, _ name: String) throws -> String {
        let attr = try openScalarAttribute(object, name)
        defer { H5Aclose(attr) }
        let type = H5Aget_type(attr)
        guard type >= 0 else { throw CheckpointError(path, "attribute \(object)@\(name) has no readable type") }
        defer { H5Tclose(type) }
        guard H5Tget_class(type) == H5T_STRING else { throw CheckpointError(path, "attribute \(object)@\(name) is not a string") }
        // A variable-length string is read as a pointer, not into our buffer: refused.
        guard H5Tis_variable_str(type) == 0 else {
            throw CheckpointError(path, "attribute \(object)@\(name) is a variable-length string; DeepTrain writes fixed-length strings")
        }
        let size = H5Tget_size(type)
        guard size > 0, size <= HDF5Limits.maxStringAttribute else {
            throw CheckpointError(path, "attribute \(object)@\(name) is a string of \(size) bytes; at most \(HDF5Limits.maxStringAttribute) are read")
        }
        var buf = [UInt8](repeating: 0, count: size + 1)
        guard H5Aread(attr, type, &buf) >= 0 else { throw CheckpointError(path, "cannot read attribute \(object)@\(name)") }
        return String(decoding: buf.prefix(while: { $0 != 0 }), as: UTF8.self)
    }

    package func intAttribute(_ object: String, _ name: String) throws -> Int64 {
        let attr = try openScalarAttribute(object, name)
        defer { H5Aclose(attr) }
        let type = H5Aget_type(attr)
        guard type >= 0 else { throw CheckpointError(path, "attribute \(object)@\(name) has no readable type") }
        defer { H5Tclose(type) }
        guard H5Tget_class(type) == H5T_INTEGER, H5Tget_size(type) <= 8 else {
            throw CheckpointError(path, "attribute \(object)@\(name) is not an integer of at most 8 bytes")
        }
        var v: Int64 = 0
        guard H5Aread(attr, deeptrain_h5t_native_int64(), &v) >= 0 else {
            throw CheckpointError(path, "cannot read attribute \(object)@\(name)")
        }
        return v
    }

    /// Opens an attribute that holds exactly one value: HDF5 reads every element of an
    /// attribute into the caller's buffer, so an array where a scalar belongs would overflow it.
    func openScalarAttribute(_ object: String, _ name: String) throws -> hid_t {
        guard H5Aexists_by_name(id, object, name, HDF5File.defaultPL) > 0 else {
            throw CheckpointError(path, "has no attribute \(object)@\(name)")
        }
        let attr = H5Aopen_by_name(id, object, name, HDF5File.defaultPL, HDF5File.defaultPL)
        guard attr >= 0 else { throw CheckpointError(path, "cannot open attribute \(object)@\(name)") }
        let space = H5Aget_space(attr)
        let points = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1
        let kind = space >= 0 ? H5Sget_simple_extent_type(space) : H5S_NO_CLASS
        if space >= 0 { H5Sclose(space) }
        guard points == 1, kind == H5S_SCALAR || kind == H5S_SIMPLE else {
            H5Aclose(attr)
            throw CheckpointError(path, "attribute \(object)@\(name) holds \(points) values; expected one")
        }
        return attr
    }

    // MARK: validation of what a file declares, before any of its bytes are read

    /// The element types DeepTrain's datasets have.
    enum Element {
        case float32, bytes
        var typeClass: H5T_class_t { self == .float32 ? H5T_FLOAT : H5T_INTEGER }
        var size: Int { self == .float32 ? 4 : 1 }
        var label: String { self == .float32 ? "float32" : "uint8" }
    }

    struct DatasetInfo {
        let shape: [Int]
        let count: Int
    }

    /// Checks a dataset's class and element size (when `expecting` is given), its rank, its
    /// element count (overflow-checked and bounded) and, for reads, that the file stores every
    /// element (contiguous, uncompressed: what DeepTrain writes) — so a few bytes of header
    /// cannot make us allocate more than the file holds.
    func dataset(_ name: String, expecting element: Element?, stored: Bool = true) throws -> DatasetInfo {
        let ds = H5Dopen2(id, name, HDF5File.defaultPL)
        guard ds >= 0 else { throw CheckpointError(path, "has no dataset \(name)") }
        defer { H5Dclose(ds) }
        let space = H5Dget_space(ds)
        guard space >= 0 else { throw CheckpointError(path, "dataset \(name) has no readable shape") }
        defer { H5Sclose(space) }
        let kind = H5Sget_simple_extent_type(space)
        guard kind == H5S_SIMPLE || kind == H5S_SCALAR else { throw CheckpointError(path, "dataset \(name) has no elements (null dataspace)") }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        guard rank >= 0, rank <= HDF5Limits.maxRank else {
            throw CheckpointError(path, "dataset \(name) has rank \(rank); at most \(HDF5Limits.maxRank) is read")
        }
        var dims = [hsize_t](repeating: 0, count: Swift.max(rank, 1))
        guard H5Sget_simple_extent_dims(space, &dims, nil) == Int32(rank) else {
            throw CheckpointError(path, "dataset \(name) has no readable shape")
        }
        let shape = try dims.prefix(rank).map { d -> Int in
            guard d <= UInt64(HDF5Limits.maxElements) else { throw CheckpointError(path, "dataset \(name) has a dimension of \(d)") }
            return Int(d)
        }
        guard let count = checkedProduct(shape), count <= HDF5Limits.maxElements else {
            throw CheckpointError(path, "dataset \(name) of shape \(shape) has more than \(HDF5Limits.maxElements) elements")
        }
        guard let element else { return DatasetInfo(shape: shape, count: count) }
        let type = H5Dget_type(ds)
        guard type >= 0 else { throw CheckpointError(path, "dataset \(name) has no readable type") }
        defer { H5Tclose(type) }
        guard H5Tget_class(type) == element.typeClass, H5Tget_size(type) == element.size else {
            throw CheckpointError(path, "dataset \(name) is not \(element.label)")
        }
        let bytes = H5Dget_storage_size(ds)
        guard !stored || bytes == UInt64(count * element.size) else {
            throw CheckpointError(path, "dataset \(name) of shape \(shape) stores \(bytes) bytes; \(element.label) needs \(count * element.size): truncated or corrupt")
        }
        return DatasetInfo(shape: shape, count: count)
    }
}

/// What DeepTrain reads from an HDF5 file at most: far above any checkpoint it writes (a
/// 671B-parameter model's largest tensor has about 2^31 elements), far below what would
/// exhaust memory on a header's say-so.
package enum HDF5Limits {
    package static let maxRank = 8
    package static let maxElements = 1 << 36
    package static let maxByteDataset = 1 << 30
    package static let maxStringAttribute = 64 << 20
    package static let maxGroupEntries: UInt64 = 10_000_000
    package static let maxNameBytes = 4096
}
