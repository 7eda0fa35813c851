import Foundation
import CHDF5
import Checkpoint

/// The binary inputs of the failure classes found by fuzzing, made from the micro model's
/// checkpoint by the HDF5 C API (the text ones are written by hand in the regressions folder).
enum FuzzRegressions {
    static func write(root: String) throws {
        let dir = (root as NSString).appendingPathComponent("Tests/Fuzz/regressions/hdf5")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let seed = (root as NSString).appendingPathComponent("Tests/Fuzz/corpus/hdf5/micro.h5")
        func variant(_ name: String, _ edit: (hid_t) -> Void) throws {
            let path = (dir as NSString).appendingPathComponent(name)
            try? FileManager.default.removeItem(atPath: path)
            try FileManager.default.copyItem(atPath: seed, toPath: path)
            let f = H5Fopen(path, deeptrain_h5f_acc_rdwr(), hid_t(H5P_DEFAULT))
            edit(f)
            H5Fclose(f)
        }
        try variant("step-as-array.h5") { attribute($0, "step", type: deeptrain_h5t_native_int64(), count: 4096) }
        try variant("version-as-array.h5") { attribute($0, "format_version", type: deeptrain_h5t_native_int64(), count: 64) }
        try variant("format-as-string-array.h5") { f in
            let type = H5Tcopy(deeptrain_h5t_c_s1())
            H5Tset_size(type, 32)
            attribute(f, "format", type: type, count: 1000)
            H5Tclose(type)
        }
        try variant("config-variable-length.h5") { f in
            let type = H5Tcopy(deeptrain_h5t_c_s1())
            H5Tset_size(type, -1)  // H5T_VARIABLE, (size_t)-1
            attribute(f, "config", type: type, count: 1, bytes: false)
            H5Tclose(type)
        }
        try variant("sparse-huge-dataset.h5") { f in
            H5Ldelete(f, "/model/model.norm.weight", hid_t(H5P_DEFAULT))
            var dims: [hsize_t] = [1 << 31, 1 << 31], chunk: [hsize_t] = [64, 64]
            let space = H5Screate_simple(2, &dims, nil)
            let dcpl = H5Pcreate(deeptrain_h5p_dataset_create())
            H5Pset_chunk(dcpl, 2, &chunk)
            H5Dclose(H5Dcreate2(f, "/model/model.norm.weight", deeptrain_h5t_native_float(), space, hid_t(H5P_DEFAULT), dcpl, hid_t(H5P_DEFAULT)))
            H5Pclose(dcpl)
            H5Sclose(space)
        }
    }

    /// Replaces `/state@name` with an array of `count` values (written as 0x41 bytes when `bytes`).
    static func attribute(_ f: hid_t, _ name: String, type: hid_t, count: Int, bytes: Bool = true) {
        let state = H5Oopen(f, "/state", hid_t(H5P_DEFAULT))
        H5Adelete(state, name)
        var dims = [hsize_t(count)]
        let space = H5Screate_simple(1, &dims, nil)
        let a = H5Acreate2(state, name, type, space, hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT))
        if bytes {
            let raw = [UInt8](repeating: 0x41, count: count * H5Tget_size(type))
            _ = raw.withUnsafeBytes { H5Awrite(a, type, $0.baseAddress!) }
        } else {
            var text: UnsafePointer<CChar>? = nil
            "{\"model_type\": \"deepseek_v2\"}".withCString { p in
                text = p
                _ = withUnsafePointer(to: &text) { H5Awrite(a, type, $0) }
            }
        }
        H5Aclose(a)
        H5Sclose(space)
        H5Oclose(state)
    }
}

extension FuzzSeeds {
    /// Writes the corpus and the binary regression inputs (`deeptrain-fuzz seeds`).
    package static func writeAll(root: String) throws {
        try writeCorpus(root: root)
        try FuzzRegressions.write(root: root)
    }
}
