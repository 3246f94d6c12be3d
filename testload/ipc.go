package testload

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Modes of the IPC scenarios: SysV objects of the container's IPC
// namespace and a POSIX message queue on its mqueue mount.
const (
	ModeSysvShm = "sysv-shm"
	ModeSysvSem = "sysv-sem"
	ModeSysvMsg = "sysv-msg"
	ModeMqueue  = "mqueue"
	// MqueueName is the POSIX message queue's name (/dev/mqueue/NAME in
	// the container).
	MqueueName = "kata-cr"
	// ipcPending is how many messages wait in a queue between beats.
	ipcPending = 4
	// semFixed is the value of the semaphore set's second semaphore,
	// which nobody changes.
	semFixed = 7
)

func init() {
	Register(Mode{Name: ModeSysvShm, Description: "a SysV shared memory segment, attached, its counter incremented every beat", Run: runSysvShm})
	Register(Mode{Name: ModeSysvSem, Description: "a SysV semaphore set, one semaphore raised every beat", Run: runSysvSem})
	Register(Mode{Name: ModeSysvMsg, Description: "a SysV message queue with messages pending, one taken and one sent every beat", Run: runSysvMsg})
	Register(Mode{Name: ModeMqueue, Description: "a POSIX message queue (/dev/mqueue/" + MqueueName + ") with messages pending, one taken and one sent every beat", Run: runMqueue})
	registerWorkload(NewWorkload("sysv-shm", "a SysV shared memory segment attached and incremented every beat ("+Name+" "+ModeSysvShm+")",
		ModeSysvShm, nil, carriedKeys(ModeSysvShm, stateKeys{same: []string{"shm_id", "shm_nattch", "shm_agrees"}, moved: []string{"shm_counter"}})))
	registerWorkload(NewWorkload("sysv-sem", "a SysV semaphore set whose first semaphore rises every beat ("+Name+" "+ModeSysvSem+")",
		ModeSysvSem, nil, carriedKeys(ModeSysvSem, stateKeys{same: []string{"sem_id", "sem1", "sem_agrees"}, moved: []string{"sem0"}})))
	queue := stateKeys{same: []string{"queue_id", "queue_order", "queue_pending"}, moved: []string{"queue_received"}}
	registerWorkload(NewWorkload("sysv-msg", "a SysV message queue with messages pending, taken and sent in order every beat ("+Name+" "+ModeSysvMsg+")",
		ModeSysvMsg, nil, carriedKeys(ModeSysvMsg, queue)))
	registerWorkload(NewWorkload("mqueue", "a POSIX message queue with messages pending, taken and sent in order every beat ("+Name+" "+ModeMqueue+")",
		ModeMqueue, nil, carriedKeys(ModeMqueue, queue)))
}

func runSysvShm(ctx context.Context, s *State, _ []string) error {
	id, err := unix.SysvShmGet(unix.IPC_PRIVATE, unix.Getpagesize(), unix.IPC_CREAT|0o600)
	if err != nil {
		return fmt.Errorf("shmget: %w", err)
	}
	seg, err := unix.SysvShmAttach(id, 0, 0)
	if err != nil {
		return fmt.Errorf("shmat %d: %w", id, err)
	}
	var count uint64
	return readyAndBeat(ctx, s, func() ([]string, error) {
		agrees := "yes"
		if got := binary.LittleEndian.Uint64(seg); got != count {
			agrees = fmt.Sprintf("no: the segment holds %d, the process counted %d", got, count)
		}
		count++
		binary.LittleEndian.PutUint64(seg, count)
		var desc unix.SysvShmDesc
		if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &desc); err != nil {
			return nil, fmt.Errorf("shmctl %d: %w", id, err)
		}
		return []string{"shm_id", strconv.Itoa(id), "shm_counter", strconv.FormatUint(count, 10),
			"shm_nattch", strconv.FormatUint(desc.Nattch, 10), "shm_agrees", agrees}, nil
	})
}

// Semaphore commands of semctl(2).
const (
	semGetVal = 12
	semSetVal = 16
)

// sembuf is struct sembuf of semop(2).
type sembuf struct {
	num uint16
	op  int16
	flg int16
}

func semVal(id, num int) (int, error) {
	v, _, errno := unix.Syscall6(unix.SYS_SEMCTL, uintptr(id), uintptr(num), semGetVal, 0, 0, 0)
	if errno != 0 {
		return 0, fmt.Errorf("semctl %d GETVAL %d: %w", id, num, errno)
	}
	return int(v), nil
}

func runSysvSem(ctx context.Context, s *State, _ []string) error {
	r, _, errno := unix.Syscall(unix.SYS_SEMGET, unix.IPC_PRIVATE, 2, unix.IPC_CREAT|0o600)
	if errno != 0 {
		return fmt.Errorf("semget: %w", errno)
	}
	id := int(r)
	if _, _, errno := unix.Syscall6(unix.SYS_SEMCTL, uintptr(id), 1, semSetVal, semFixed, 0, 0); errno != 0 {
		return fmt.Errorf("semctl %d SETVAL: %w", id, errno)
	}
	count := 0
	return readyAndBeat(ctx, s, func() ([]string, error) {
		v0, err := semVal(id, 0)
		if err != nil {
			return nil, err
		}
		agrees := "yes"
		if v0 != count {
			agrees = fmt.Sprintf("no: the semaphore is %d, the process raised it %d times", v0, count)
		}
		op := sembuf{num: 0, op: 1}
		if _, _, errno := unix.Syscall(unix.SYS_SEMOP, uintptr(id), uintptr(unsafe.Pointer(&op)), 1); errno != 0 {
			return nil, fmt.Errorf("semop %d: %w", id, errno)
		}
		count++
		v1, err := semVal(id, 1)
		if err != nil {
			return nil, err
		}
		return []string{"sem_id", strconv.Itoa(id), "sem0", strconv.Itoa(count), "sem1", strconv.Itoa(v1), "sem_agrees", agrees}, nil
	})
}

// orderedQueue is a message queue that holds ipcPending messages numbered
// in order: every beat takes the oldest, checks its number, and sends the
// next.
type orderedQueue struct {
	id             int
	send           func(seq uint64) error
	receive        func() (uint64, error)
	pending        func() (int, error)
	sent, received uint64
	outOfOrder     string
}

func (q *orderedQueue) setup() error {
	for range ipcPending {
		q.sent++
		if err := q.send(q.sent); err != nil {
			return err
		}
	}
	return nil
}

func (q *orderedQueue) beat() ([]string, error) {
	n, err := q.pending()
	if err != nil {
		return nil, err
	}
	seq, err := q.receive()
	if err != nil {
		return nil, err
	}
	q.received++
	if seq != q.received && q.outOfOrder == "" {
		q.outOfOrder = fmt.Sprintf("no: message %d came as number %d", seq, q.received)
	}
	q.sent++
	if err := q.send(q.sent); err != nil {
		return nil, err
	}
	order := "yes"
	if q.outOfOrder != "" {
		order = q.outOfOrder
	}
	return []string{"queue_id", strconv.Itoa(q.id), "queue_received", strconv.FormatUint(q.received, 10),
		"queue_order", order, "queue_pending", strconv.Itoa(n)}, nil
}

func runOrderedQueue(ctx context.Context, s *State, q *orderedQueue) error {
	if err := q.setup(); err != nil {
		return err
	}
	return readyAndBeat(ctx, s, q.beat)
}

// msgbuf is a SysV message: its type and a sequence number.
type msgbuf struct {
	mtype int64
	seq   uint64
}

// SysV message queue commands.
const msgStat = 2

func runSysvMsg(ctx context.Context, s *State, _ []string) error {
	r, _, errno := unix.Syscall(unix.SYS_MSGGET, unix.IPC_PRIVATE, unix.IPC_CREAT|0o600, 0)
	if errno != 0 {
		return fmt.Errorf("msgget: %w", errno)
	}
	id := int(r)
	q := &orderedQueue{id: id}
	q.send = func(seq uint64) error {
		m := msgbuf{mtype: 1, seq: seq}
		if _, _, errno := unix.Syscall6(unix.SYS_MSGSND, uintptr(id), uintptr(unsafe.Pointer(&m)), 8, unix.IPC_NOWAIT, 0, 0); errno != 0 {
			return fmt.Errorf("msgsnd %d: %w", id, errno)
		}
		return nil
	}
	q.receive = func() (uint64, error) {
		var m msgbuf
		if _, _, errno := unix.Syscall6(unix.SYS_MSGRCV, uintptr(id), uintptr(unsafe.Pointer(&m)), 8, 0, unix.IPC_NOWAIT, 0); errno != 0 {
			return 0, fmt.Errorf("msgrcv %d: %w", id, errno)
		}
		return m.seq, nil
	}
	q.pending = func() (int, error) {
		// struct msqid_ds; msg_qnum is the fifth word after the
		// permissions (ipc_perm, 48 bytes on 64-bit Linux): stime,
		// rtime, ctime, cbytes, qnum.
		var ds [120]byte
		if _, _, errno := unix.Syscall(unix.SYS_MSGCTL, uintptr(id), msgStat, uintptr(unsafe.Pointer(&ds))); errno != 0 {
			return 0, fmt.Errorf("msgctl %d IPC_STAT: %w", id, errno)
		}
		return int(binary.NativeEndian.Uint64(ds[48+4*8:])), nil
	}
	return runOrderedQueue(ctx, s, q)
}

// mqAttr is struct mq_attr.
type mqAttr struct {
	flags, maxmsg, msgsize, curmsgs int64
	_                               [4]int64
}

func runMqueue(ctx context.Context, s *State, _ []string) error {
	name, err := unix.BytePtrFromString(MqueueName)
	if err != nil {
		return err
	}
	attr := mqAttr{maxmsg: 8, msgsize: 8}
	r, _, errno := unix.Syscall6(unix.SYS_MQ_OPEN, uintptr(unsafe.Pointer(name)), unix.O_RDWR|unix.O_CREAT|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600, uintptr(unsafe.Pointer(&attr)), 0, 0)
	if errno != 0 {
		return fmt.Errorf("mq_open %s: %w", MqueueName, errno)
	}
	mqd := int(r)
	q := &orderedQueue{id: mqd}
	q.send = func(seq uint64) error {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], seq)
		if _, _, errno := unix.Syscall6(unix.SYS_MQ_TIMEDSEND, uintptr(mqd), uintptr(unsafe.Pointer(&b[0])), 8, 0, 0, 0); errno != 0 {
			return fmt.Errorf("mq_send: %w", errno)
		}
		return nil
	}
	q.receive = func() (uint64, error) {
		var b [8]byte
		if _, _, errno := unix.Syscall6(unix.SYS_MQ_TIMEDRECEIVE, uintptr(mqd), uintptr(unsafe.Pointer(&b[0])), 8, 0, 0, 0); errno != 0 {
			return 0, fmt.Errorf("mq_receive: %w", errno)
		}
		return binary.LittleEndian.Uint64(b[:]), nil
	}
	q.pending = func() (int, error) {
		var a mqAttr
		if _, _, errno := unix.Syscall(unix.SYS_MQ_GETSETATTR, uintptr(mqd), 0, uintptr(unsafe.Pointer(&a))); errno != 0 {
			return 0, fmt.Errorf("mq_getattr: %w", errno)
		}
		return int(a.curmsgs), nil
	}
	return runOrderedQueue(ctx, s, q)
}
