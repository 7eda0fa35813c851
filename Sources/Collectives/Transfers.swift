import CMPI

/// Point-to-point messages in flight on one communicator: posted now, completed later, moved
/// along by `test()` in between. Open MPI's TCP transport moves data only inside MPI calls, so
/// whoever overlaps a transfer with computation calls `test()` now and then (between autograd
/// nodes); shared memory and large messages both need it, the rendezvous of a large message
/// included. The buffers belong to the caller and must stay put until `wait()` returns.
package struct Transfers {
    let group: Communicator
    private var requests: [MPI_Request?] = []

    package init(on group: Communicator) { self.group = group }

    package var isEmpty: Bool { requests.isEmpty }

    package mutating func send(_ data: UnsafePointer<Float>, count: Int, to peer: Int, tag: Int) throws {
        guard let comm = group.comm, count > 0 else { return }
        var req = deeptrain_mpi_request_null()
        try Communicator.check("MPI_Isend", MPI_Isend(data, Int32(count), Float.mpiType, Int32(peer), Int32(tag), comm, &req))
        requests.append(req)
    }

    package mutating func receive(_ data: UnsafeMutablePointer<Float>, count: Int, from peer: Int, tag: Int) throws {
        guard let comm = group.comm, count > 0 else { return }
        var req = deeptrain_mpi_request_null()
        try Communicator.check("MPI_Irecv", MPI_Irecv(data, Int32(count), Float.mpiType, Int32(peer), Int32(tag), comm, &req))
        requests.append(req)
    }

    /// Lets the library move data; true when everything posted has completed.
    @discardableResult
    package mutating func test() throws -> Bool {
        guard !requests.isEmpty else { return true }
        var done: Int32 = 0
        try requests.withUnsafeMutableBufferPointer { r in
            try Communicator.check("MPI_Testall", MPI_Testall(Int32(r.count), r.baseAddress, &done, deeptrain_mpi_statuses_ignore()))
        }
        if done != 0 { requests.removeAll() }
        return done != 0
    }

    /// Until everything posted has completed.
    package mutating func wait() throws {
        guard !requests.isEmpty else { return }
        try requests.withUnsafeMutableBufferPointer { r in
            try Communicator.check("MPI_Waitall", MPI_Waitall(Int32(r.count), r.baseAddress, deeptrain_mpi_statuses_ignore()))
        }
        requests.removeAll()
    }
}
