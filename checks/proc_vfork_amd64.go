package checks

import "golang.org/x/sys/unix"

// sysVfork is vfork(2)'s number; architectures without it use clone.
const sysVfork = unix.SYS_VFORK
