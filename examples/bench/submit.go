package main

import (
	"context"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
)

// submit runs submitters goroutines, each calling op(ctx, k) with its
// number k for as long as m hands out operations, and returns the latency
// of every successful call. The first error ends the run: it cancels the
// ctx the other submitters' calls get, and is returned.
func submit(ctx context.Context, submitters int, m *meter, op func(ctx context.Context, k int) error) ([]time.Duration, error) {
	g, ctx := errgroup.WithContext(ctx)
	lats := make([][]time.Duration, submitters)
	for k := range submitters {
		g.Go(func() error {
			for ctx.Err() == nil && m.next() {
				t0 := time.Now()
				if err := op(ctx, k); err != nil {
					return err
				}
				lats[k] = append(lats[k], time.Since(t0))
			}
			return nil
		})
	}
	err := g.Wait()
	return slices.Concat(lats...), err
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
