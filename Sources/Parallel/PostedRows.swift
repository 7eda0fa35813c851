import Autograd
import Collectives

/// One nonblocking all-to-all of float rows between the ranks of an ep group, as
/// point-to-point messages on a tag of its own: what `TokenDispatcher.move` posts. With bf16
/// the rows travel packed as bfloat16 (half the bytes) and are unpacked when they arrive.
/// Exchanges on one group run one after the other (each waited before the next is posted),
/// so the messages of one tag between two ranks never overtake each other.
final class PostedRows {
    static let tag = 0x5E0
    private var transfers: Transfers
    private let bf16: Bool
    /// The bf16 buffers (stable addresses: the messages read and fill them until `wait`).
    private let packed: UnsafeMutablePointer<UInt16>?, arriving: UnsafeMutablePointer<UInt16>?
    private var unpack: [(from: Int, to: UnsafeMutablePointer<Float>, count: Int)] = []

    init(on group: Communicator, bf16: Bool, sending: Int, receiving: Int) {
        transfers = Transfers(on: group)
        self.bf16 = bf16
        packed = bf16 ? .allocate(capacity: Swift.max(sending, 1)) : nil
        arriving = bf16 ? .allocate(capacity: Swift.max(receiving, 1)) : nil
    }

    deinit {
        packed?.deallocate()
        arriving?.deallocate()
    }

    /// Posts every other rank's block (`counts`, `displacements` in floats); this rank's own
    /// block is the caller's to copy.
    func post(_ rows: UnsafeMutablePointer<Float>, _ sendCounts: [Int], _ sendDispls: [Int],
              into arrived: UnsafeMutablePointer<Float>, _ recvCounts: [Int], _ recvDispls: [Int]) throws {
        let me = transfers.group.rank
        for q in 0..<transfers.group.size where q != me {
            if let packed, let arriving {
                BFloat16.pack(rows + sendDispls[q], count: sendCounts[q], into: packed + sendDispls[q])
                try transfers.receive(arriving + recvDispls[q], count: recvCounts[q], from: q, tag: Self.tag)
                try transfers.send(UnsafePointer(packed + sendDispls[q]), count: sendCounts[q], to: q, tag: Self.tag)
                unpack.append((recvDispls[q], arrived + recvDispls[q], recvCounts[q]))
            } else {
                try transfers.receive(arrived + recvDispls[q], count: recvCounts[q], from: q, tag: Self.tag)
                try transfers.send(UnsafePointer(rows + sendDispls[q]), count: sendCounts[q], to: q, tag: Self.tag)
            }
        }
    }

    func wait() throws {
        try transfers.wait()
        if let arriving {
            for u in unpack where u.count > 0 { BFloat16.unpack(arriving + u.from, count: u.count, into: u.to) }
        }
        unpack = []
    }
}
