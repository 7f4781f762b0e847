package main

import (
	"fmt"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// msgsAlgorithms are the algorithms the messages section checks.
var msgsAlgorithms = []lamportmutex.Algorithm{lamportmutex.Lamport, lamportmutex.RicartAgrawala}

// msgsCycles is the lock cycles of each messages measurement: uncontended
// at one peer, and per peer when every peer loops.
const msgsCycles = 20

func keyMessages(alg lamportmutex.Algorithm, n int, contended bool) string {
	how := "uncontended"
	if contended {
		how = "contended"
	}
	return fmt.Sprintf("messages/%s/%d/%s", alg, n, how)
}

// measureMessages checks, over Chan, that every entry costs exactly the
// algorithm's messages for every group size in ns and both algorithms,
// with one peer locking and with every peer looping. The counts do not
// depend on timing, so each measurement runs a fixed number of cycles.
func measureMessages(rec *recorder, ns []int, step func(string)) error {
	for _, alg := range msgsAlgorithms {
		step(fmt.Sprintf("messages/%s (N = %d sizes)", alg, len(ns)))
		for _, n := range ns {
			want := float64(algMsgs(alg, n))
			for _, contended := range []bool{false, true} {
				key := keyMessages(alg, n, contended)
				var s Sample
				var err error
				what := "Lock+Unlock, others idle"
				if contended {
					what = "every peer loops Lock/Unlock"
					s, err = contendedAlg(overChan, alg, n, budget{n: int64(msgsCycles * n)})
				} else {
					s, err = uncontendedAlg(overChan, alg, n, budget{n: msgsCycles})
				}
				if err != nil {
					return fmt.Errorf("%s: %w", key, err)
				}
				rec.add(Measurement{Key: key, Section: secMessages, Transport: overChan, N: n, Algorithm: alg.String(),
					WantMsgs: want, Label: fmt.Sprintf("%s chan N=%d: %s", alg, n, what)}, s)
			}
		}
	}
	return nil
}
