package fastpath

import "sync"

// runner is a task for a workerPool.
type runner interface{ run() }

// workerPool runs handlers on long-lived goroutines, whose stacks stay
// grown from call to call; when all are busy a task gets a goroutine of
// its own.
type workerPool struct {
	tasks chan runner
	mu    sync.RWMutex
	n     int
	done  bool
	wg    sync.WaitGroup
}

// maxWorkers is how many goroutines a pool keeps.
const maxWorkers = 64

func newWorkerPool() *workerPool { return &workerPool{tasks: make(chan runner)} }

// run runs t on an idle worker, a new worker, or a goroutine of its own.
func (p *workerPool) run(t runner) {
	p.mu.RLock()
	if !p.done {
		select {
		case p.tasks <- t:
			p.mu.RUnlock()
			return
		default:
		}
	}
	p.mu.RUnlock()
	p.mu.Lock()
	keep := !p.done && p.n < maxWorkers
	if keep {
		p.n++
		p.wg.Add(1)
	}
	p.mu.Unlock()
	if !keep {
		go t.run()
		return
	}
	go func() {
		defer p.wg.Done()
		t.run()
		for t := range p.tasks {
			t.run()
		}
	}()
}

// stop ends the idle workers once the tasks running are done.
func (p *workerPool) stop() {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return
	}
	p.done = true
	close(p.tasks)
	p.mu.Unlock()
	p.wg.Wait()
}
