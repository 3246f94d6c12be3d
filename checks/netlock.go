package checks

import (
	"context"
	"errors"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/criu/criuopt"
)

// criuFeatureNFTablesLock is the `criu check --feature` name of the
// nftables network lock.
const criuFeatureNFTablesLock = "network_lock_nftables"

// netLock is the network lock kata-cr plans for a dump that holds TCP
// connections: CRIU locks them while it dumps (and until the tree is
// killed) so that the peer sees no reset, through iptables by default or
// nf_tables with --network-lock nftables. Method is empty when neither
// works here; Evidence says how it was chosen.
type netLock struct {
	Method criuopt.NetworkLock
	// DefaultWorks says CRIU's default lock, iptables, is here
	// (iptables-restore on PATH): the dump needs no --network-lock.
	DefaultWorks bool
	Evidence     []string
}

type netLockKey struct{}

// planNetLock chooses the network lock once per Runner.Run: nftables when
// this CRIU says it supports it (its answer depends on libnftables in CRIU
// and nf_tables in the kernel), else iptables when iptables-restore is on
// PATH (CRIU runs it by name), else none.
func planNetLock(ctx context.Context, env *Env) netLock {
	l, _ := memoize(ctx, netLockKey{}, func() (netLock, error) { return chooseNetLock(ctx, env), nil })
	return l
}

func chooseNetLock(ctx context.Context, env *Env) netLock {
	var l netLock
	ipt := sysLookTool("iptables-restore")
	l.DefaultWorks = ipt != ""
	ask := "criu check --feature " + criuFeatureNFTablesLock
	if env.CRIU == nil {
		l.Evidence = append(l.Evidence, "no criu to ask about the nftables lock: "+env.CRIUMissing)
	} else {
		ok, detail, err := env.CRIU.Feature(ctx, criuFeatureNFTablesLock)
		var fe *criu.FeatureError
		switch {
		case err == nil && ok:
			l.Method = criuopt.NetworkLockNFTables
			l.Evidence = append(l.Evidence, ask+": "+detail)
			if ipt == "" {
				l.Evidence = append(l.Evidence, "iptables-restore: not found on PATH: CRIU's default lock, iptables, would fail")
			}
			return l
		case err == nil:
			l.Evidence = append(l.Evidence, ask+": not supported: "+detail)
		case errors.As(err, &fe):
			l.Evidence = append(l.Evidence, ask+": "+fe.Error())
		default:
			l.Evidence = append(l.Evidence, ask+": "+err.Error())
		}
	}
	if ipt != "" {
		l.Method = criuopt.NetworkLockIPTables
		l.Evidence = append(l.Evidence, "iptables-restore: "+ipt)
		return l
	}
	l.Evidence = append(l.Evidence, "iptables-restore: not found on PATH")
	return l
}
