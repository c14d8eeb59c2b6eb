"""wsp forker: starts a workspace's commands from inside its sandbox (local backend).

It runs beside the workspace's namespace holder (forker-start.ts), sandboxed as a command is: the
workspace's user, in its user and pid namespaces, with its home, /tmp, /proc and /dev mounted and
no capabilities. A command is then one fork + exec of an already sandboxed process (a few ms)
instead of a new bubblewrap sandbox per command.

The provider's command supervisor (daemon.ts, root, outside every sandbox) talks to it through the
channel dir bound read-only at this script's dir: a root-made dir the workspace cannot write.
  req              FIFO, read here: one line per request, "s <token>" (start), "k <token>" (kill) or
                   "r <token> <rows> <cols>" (resize the command's terminal)
  <token>.req      the start request (JSON): argv, env, cwd and the names of its FIFOs
  out, err, st     FIFO names given in the request: the command's stdout/stderr (read and capped by
                   the supervisor) and this command's status channel, where this writes
                   "p <pid>" once the command runs and "x <code>" when it ended (code < 0: -signal)
  in               optional: a file or FIFO for stdin (else /dev/null)
  tty              optional: [rows, cols]: the command runs under a pseudo-terminal made here (its
                   session leader, the terminal its controlling tty); this process copies the
                   terminal's output to `out` and `in` to its keyboard (end of `in`: ^D), and `err`
                   stays empty
Nothing here is trusted by the supervisor beyond this workspace: a workspace that tampers with its
forker can only lie about, or stop, its own commands (the supervisor falls back to a sandbox per
command, see daemon.ts). This process holds no descriptor a command inherits (all close-on-exec).
"""

import errno
import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import termios

CHAN = os.path.dirname(os.path.abspath(__file__))
TOKEN = re.compile(r"^[0-9a-f]{32}$")
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_LINE = 256

# token -> pid (its process group: the command leads a session of its own)
running = {}
# pid -> (token, status fd, Popen)
children = {}
# token -> Terminal (commands started with a tty, until their terminal closes)
terminals = {}


class Terminal:
    """A command's pseudo-terminal: its master, and the FIFOs it is bridged to."""

    def __init__(self, master, out, inp):
        self.master, self.out, self.inp = master, out, inp
        self.keys = b""  # input not yet taken by the terminal (it reads at its own pace)
        # Its other side is closed by everyone (EIO): output and input are done, but the master stays
        # open until the command is reaped — closing it hangs the terminal up (SIGHUP to the
        # foreground), and a command that closed its stdio on the way out is not dead yet.
        self.drained = False
        self.reaped = False

    def wants_input(self):
        return not self.drained and self.inp is not None and len(self.keys) < (1 << 16)

    def drain(self):
        """Nothing more comes out: end the output and the input; the master waits for the reap."""
        self.drained = True
        self.keys = b""
        for fd in (self.out, self.inp):
            if fd is not None:
                os.close(fd)
        self.out = self.inp = None

    def finished(self):
        return self.drained and self.reaped

    def from_terminal(self):
        try:
            data = os.read(self.master, 1 << 16)
        except BlockingIOError:
            return True
        except OSError:
            data = b""  # EIO: every holder of the terminal's other side is gone
        if not data:
            return False
        try:
            write_all(self.out, data)  # the supervisor reads (and caps) it at once
        except OSError:
            return False
        return True

    def from_input(self):
        try:
            data = os.read(self.inp, 1 << 16)
        except BlockingIOError:
            return
        if data:
            self.keys += data
            return
        # The supervisor closed the input (eof): the terminal's end-of-file key, once.
        self.keys += b"\x04"
        os.close(self.inp)
        self.inp = None

    def to_terminal(self):
        try:
            self.keys = self.keys[os.write(self.master, self.keys[:4096]) :]
        except BlockingIOError:
            pass
        except OSError:
            self.keys = b""

    def resize(self, rows, cols):
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def close(self):
        for fd in (self.master, self.out, self.inp):
            if fd is not None:
                os.close(fd)


def chan_path(name):
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError("bad channel name")
    return os.path.join(CHAN, name)


def write_all(fd, data):
    while data:
        data = data[os.write(fd, data) :]


def open_writer(name):
    # Non-blocking: a FIFO whose reader (the supervisor) gave up fails at once (ENXIO), never hangs.
    fd = os.open(chan_path(name), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    os.set_blocking(fd, True)
    return fd


def start(token):
    with open(chan_path(token + ".req"), "rb") as f:
        req = json.loads(f.read(1 << 20))
    argv, env, cwd = req["argv"], req["env"], req["cwd"]
    st = open_writer(req["st"])
    fds = []
    try:
        fds.append(open_writer(req["out"]))
        fds.append(open_writer(req["err"]))
        stdin = req.get("in")
        fds.append(os.open(chan_path(stdin) if stdin else "/dev/null", os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW))
        size = req.get("tty")
        terminal = None
        if size is not None:
            rows, cols = int(size[0]), int(size[1])
            master, slave = os.openpty()  # both close-on-exec
            fds.append(slave)
            os.set_blocking(master, False)
            terminal = Terminal(master, fds[0], fds[2])
            terminal.resize(rows, cols)
            os.set_blocking(fds[2], False)
            fds[0] = fds[2] = None  # the terminal's now
        try:
            child = subprocess.Popen(
                argv,
                stdin=fds[2] if terminal is None else fds[3],
                stdout=fds[0] if terminal is None else fds[3],
                stderr=fds[1] if terminal is None else fds[3],
                cwd=cwd,
                env=env,
                close_fds=True,
                start_new_session=True,
                # In its new session, the terminal becomes its controlling tty (job control, ^C).
                preexec_fn=None if terminal is None else take_terminal,
            )
        except OSError as e:
            # What a shell would say and exit with: 126 found but not runnable, 127 not found.
            where = cwd if e.filename == cwd else argv[0]
            write_all(fds[1], ("wsp: cannot run %s: %s\n" % (where, e.strerror)).encode("utf-8", "replace"))
            code = 127 if e.errno == errno.ENOENT and where != cwd else 126
            write_all(st, b"p 0\nx %d\n" % code)
            os.close(st)
            if terminal is not None:
                terminal.close()
            return
    except BaseException:
        os.close(st)
        raise
    finally:
        for fd in fds:
            if fd is not None:
                os.close(fd)
    if terminal is not None:
        terminals[token] = terminal
    try:
        write_all(st, b"p %d\n" % child.pid)
    except OSError:
        # The supervisor gave up on this command before it ran: it must not run unseen.
        kill_group(child.pid)
    running[token] = child.pid
    children[child.pid] = (token, st, child)


def take_terminal():
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def reap():
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        entry = children.pop(pid, None)
        if entry is None:
            continue
        token, st, child = entry
        terminal = terminals.get(token)
        if terminal is not None:
            terminal.reaped = True
            if terminal.finished():
                terminal.close()
                del terminals[token]
        child.returncode = os.waitstatus_to_exitcode(status)  # so Popen never waits for it again
        running.pop(token, None)
        try:
            write_all(st, b"x %d\n" % child.returncode)
        except OSError:
            pass
        os.close(st)


def handle(line):
    parts = line.split(b" ")
    if len(parts) == 4 and parts[0] == b"r":
        token = parts[1].decode("ascii", "replace")
        if token in terminals and parts[2].isdigit() and parts[3].isdigit():
            rows, cols = int(parts[2]), int(parts[3])
            if 0 < rows <= 1000 and 0 < cols <= 1000:
                terminals[token].resize(rows, cols)
        return
    if len(parts) != 2:
        return
    op, token = parts[0], parts[1].decode("ascii", "replace")
    if not TOKEN.match(token):
        return
    if op == b"s":
        try:
            start(token)
        except Exception:  # a bad or withdrawn request: the supervisor times it out
            pass
    elif op == b"k" and token in running:
        kill_group(running[token])


def main():
    os.umask(0o022)
    # Read and write: the FIFO never reads EOF while supervisors come and go.
    req = os.open(os.path.join(CHAN, "req"), os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    # Ready (pid-namespace.ts waits for this byte on fd 4), then nothing of the holder's start stays open.
    os.write(4, b"r")
    os.close(4)
    pending = b""
    while True:
        watch = [req, wake_r]
        writable = []
        for t in terminals.values():
            if t.drained:
                continue
            watch.append(t.master)
            if t.wants_input():
                watch.append(t.inp)
            if t.keys:
                writable.append(t.master)
        try:
            readable, ready, _ = select.select(watch, writable, [])
        except InterruptedError:
            continue
        for token, t in list(terminals.items()):
            if t.drained:
                continue
            if t.master in ready:
                t.to_terminal()
            if t.inp is not None and t.inp in readable:
                t.from_input()
            if t.master in readable and not t.from_terminal():
                t.drain()
                if t.finished():
                    t.close()
                    del terminals[token]
        if wake_r in readable:
            try:
                os.read(wake_r, 512)
            except BlockingIOError:
                pass
        reap()
        if req in readable:
            pending += os.read(req, 4096)
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                handle(line)
            if len(pending) > MAX_LINE:
                pending = b""  # garbage from inside the workspace: drop it


main()
