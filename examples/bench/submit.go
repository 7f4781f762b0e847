package main

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"time"
)

// submit runs submitters goroutines, each calling op(ctx, k) with its
// number k for as long as m hands out operations, and returns the latency
// of every successful call. The first error stops that submitter; the
// others run on until m is spent.
func submit(ctx context.Context, submitters int, m *meter, op func(ctx context.Context, k int) error) ([]time.Duration, error) {
	var wg sync.WaitGroup
	lats := make([][]time.Duration, submitters)
	errs := make([]error, submitters)
	for k := range submitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m.next() {
				t0 := time.Now()
				if err := op(ctx, k); err != nil {
					errs[k] = err
					return
				}
				lats[k] = append(lats[k], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	return slices.Concat(lats...), errors.Join(errs...)
}

// liveHeap returns the bytes of heap in use after a full collection: the
// spans holding live objects (runtime.MemStats.HeapInuse).
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// totalAlloc returns the bytes allocated on the heap so far.
func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}
