# Mount `src` (a root-only snapshot home) read-only at `target` as an ID-MAPPED bind mount: files
# the snapshot's original workspace uid owns on disk appear owned by the new workspace's uid.
# Usage: python3 idmap-mount.py SRC TARGET FROM_ID TO_ID   (run as root)
# Linux's new mount API (open_tree, mount_setattr, move_mount) has no tool in util-linux 2.38 and
# no binding in Node: this calls the syscalls through ctypes. Nothing here reads the workspace.
import ctypes, os, signal, sys

libc = ctypes.CDLL(None, use_errno=True)
SYS_open_tree, SYS_move_mount, SYS_mount_setattr = 428, 429, 442  # x86_64 and aarch64 alike
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, 0o2000000
AT_EMPTY_PATH, AT_RECURSIVE, AT_FDCWD = 0x1000, 0x8000, -100
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC = 0x1, 0x2, 0x4, 0x8
MOUNT_ATTR_IDMAP = 0x100000
CLONE_NEWUSER = 0x10000000


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def fail(what):
    e = ctypes.get_errno()
    sys.stderr.write(f"{what}: {os.strerror(e)}\n")
    sys.exit(1)


def userns_fd(from_id, to_id):
    """A user namespace whose only mapping is from_id (inside) -> to_id (outside)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        if libc.unshare(CLONE_NEWUSER) != 0:
            os._exit(1)
        os.write(w, b"x")
        signal.pause()
        os._exit(0)
    os.close(w)
    ok = os.read(r, 1) == b"x"
    os.close(r)
    try:
        if not ok:
            sys.stderr.write("unshare(CLONE_NEWUSER) failed\n")
            sys.exit(1)
        for f in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{f}", "w") as fh:
                fh.write(f"{from_id} {to_id} 1\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def main():
    src, target, from_id, to_id = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ns = userns_fd(from_id, to_id)
    fd = libc.syscall(SYS_open_tree, AT_FDCWD, src.encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)
    if fd < 0:
        fail("open_tree")
    attr = MountAttr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, 0, ns)
    if libc.syscall(SYS_mount_setattr, fd, b"", AT_EMPTY_PATH, ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
        fail("mount_setattr")
    if libc.syscall(SYS_move_mount, fd, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH) != 0:
        fail("move_mount")


main()
