package lamportmutex

import (
	"sync"
	"sync/atomic"
)

// explorePool hands frames between the explorer's workers. A worker whose
// stack runs dry waits here for frames; a busy worker that sees one
// waiting gives it the bottom half of its stack (the states nearest the
// start, with the most below them). The exploration ends when every
// worker waits and no frame is left, or when one fails.
type explorePool struct {
	mu      sync.Mutex
	cond    sync.Cond
	workers int
	frames  []frame // given and not yet taken (under mu)
	waiting int     // workers waiting for frames (under mu)
	done    bool    // every worker waited with no frame left (under mu)
	err     error   // the first failure (under mu)

	want atomic.Bool // a worker waits: busy ones give
	stop atomic.Bool // done, or failed
}

func (p *explorePool) init(workers int) {
	p.cond.L = &p.mu
	p.workers = workers
}

// stopped reports whether workers should return.
func (p *explorePool) stopped() bool { return p.stop.Load() }

// hungry reports whether a worker waits for frames.
func (p *explorePool) hungry() bool { return p.want.Load() }

// take returns frames to expand, waiting for a worker to give some, or
// nil once the exploration is over.
func (p *explorePool) take() []frame {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.frames) == 0 {
		if p.done || p.err != nil {
			return nil
		}
		p.waiting++
		if p.waiting == p.workers {
			p.done = true
			p.stop.Store(true)
			p.cond.Broadcast()
			return nil
		}
		p.want.Store(true)
		p.cond.Wait()
		p.waiting--
	}
	fs := p.frames
	p.frames = nil
	p.want.Store(p.waiting > 0)
	return fs
}

// give hands frames to the waiting workers.
func (p *explorePool) give(fs []frame) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frames = append(p.frames, fs...)
	p.want.Store(false)
	p.cond.Broadcast()
}

// fail ends the exploration with err, unless it failed already.
func (p *explorePool) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
	p.stop.Store(true)
	p.cond.Broadcast()
}
