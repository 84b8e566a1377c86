package main

import (
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// terminal returns the descriptor of stdin when it is this process's
// controlling terminal and this process is in its foreground, else -1.
//
// The command of `leasehold run` gets a process group of its own (so that a
// lost lease stops all of it). On a terminal, that group must also be the
// terminal's foreground group, or the command is stopped (SIGTTIN) the
// moment it reads from the terminal, and Ctrl-C would not reach it.
func terminal() int {
	fd := int(os.Stdin.Fd())
	pgrp, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	if err != nil || pgrp != syscall.Getpgrp() {
		return -1
	}
	return fd
}

// takeBackTerminal makes this process's group the foreground group of the
// terminal fd again, after the command's group had it, so that whatever ran
// leasehold (a script, a shell without job control) keeps its terminal.
func takeBackTerminal(fd int) {
	// A background group that sets the foreground group gets SIGTTOU: ignore it meanwhile.
	signal.Ignore(syscall.SIGTTOU)
	defer signal.Reset(syscall.SIGTTOU)
	unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, syscall.Getpgrp())
}
