package lamportmutex

// The simulation with a replicated chain on top: a model of the ledger's
// use of the Mutex (package ledger: blocks with releases, catch-up over
// DATA after PeerUp, and a sync round before a holder appends), so that
// the seeded simulation crashes peers at any step, the holder too and
// between the deliveries of its release, and checks after every step that
// no two peers ever hold different blocks at one height, and at the end
// that every chain converges and holds every block a holder released.
//
// The model keeps the ledger's rules, with blocks reduced to names:
//
//   - A holder that saw a PeerUp since its last sync asks every peer for
//     its head (DATA "Q"); each peer sends the blocks the holder lacks
//     (DATA "B") and then answers with its head (DATA "A"). The holder
//     appends only when it has every head, and only after a round during
//     which no PeerUp came.
//   - On every PeerUp a peer announces its head to every peer (DATA "H");
//     a peer that has more sends the blocks, each at most once per
//     incarnation of the receiver.
//   - A holder's block is persisted (it survives the holder's crash) and
//     then released with the RELEASE; a receiver persists it before the
//     release takes effect. A block ahead of a gap is held in memory.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// chainBlock is one block of the model: its height, its name and the name
// of the block before it ("" before the first).
type chainBlock struct {
	height int
	name   string
	prev   string
}

func (b chainBlock) String() string { return fmt.Sprintf("%d:%s:%s", b.height, b.name, b.prev) }

// chainApp is the replicated chain over a simulated cluster.
type chainApp struct {
	c         *cluster
	chains    [][]chainBlock       // per peer, durable: survives its crashes
	pending   []map[int]chainBlock // per peer: blocks ahead of a gap (lost in a crash)
	upGen     []int                // per peer: PeerUps seen by this incarnation
	synced    []int                // per peer: upGen at the start of its last good round; -1: never
	round     []int                // per peer: the round it runs, 0 for none
	roundGen  []int                // per peer: upGen when the round started
	answers   []map[int]int        // per peer: the heights its round's peers answered
	rounds    int                  // round numbers, unique in the whole run
	sentTo    [][]int              // [p][q]: height up to which p sent q blocks (q's incarnation)
	committed map[string]int       // every block a holder released, by name: its height
	made      int                  // blocks made, to name them
	noSync    bool                 // fault: append without a sync round (checker check)
}

func newChainApp(c *cluster) *chainApp {
	n := len(c.ids)
	a := &chainApp{c: c, chains: make([][]chainBlock, n), pending: make([]map[int]chainBlock, n),
		upGen: make([]int, n), synced: make([]int, n), round: make([]int, n), roundGen: make([]int, n),
		answers: make([]map[int]int, n), sentTo: make([][]int, n), committed: map[string]int{}}
	for p := range n {
		a.pending[p] = map[int]chainBlock{}
		a.sentTo[p] = make([]int, n)
		a.synced[p] = -1
	}
	c.app = a
	return a
}

func (a *chainApp) crashed(p int) {
	// The chain is on disk; the rest dies with the process.
	a.pending[p] = map[int]chainBlock{}
	a.upGen[p], a.synced[p], a.round[p], a.answers[p] = 0, -1, 0, nil
	for q := range a.sentTo[p] {
		a.sentTo[p][q] = 0
	}
}

func (a *chainApp) head(p int) (int, string) {
	if ch := a.chains[p]; len(ch) > 0 {
		return len(ch), ch[len(ch)-1].name
	}
	return 0, ""
}

// data makes a DATA message from p to q.
func (a *chainApp) data(p, q int, text string) (Message, error) {
	return a.c.ms[p].Data(a.c.ids[q], []byte(text))
}

// release handles a holder's block, before the release takes effect at p.
func (a *chainApp) release(p, from int, payload []byte) error {
	b, err := parseBlocks(string(payload))
	if err != nil {
		return err
	}
	return a.accept(p, b)
}

// accept persists and inserts the blocks that extend p's chain, holds the
// others, and fails on a block that contradicts p's chain: a fork.
func (a *chainApp) accept(p int, blocks []chainBlock) error {
	for _, b := range blocks {
		if b.height <= len(a.chains[p]) {
			if have := a.chains[p][b.height-1]; have.name != b.name {
				return fmt.Errorf("fork: peer %s has block %v at height %d, was sent %v", a.c.ids[p], have, b.height, b)
			}
			continue
		}
		if have, ok := a.pending[p][b.height]; ok && have.name != b.name {
			return fmt.Errorf("fork: peer %s holds block %v at height %d, was sent %v", a.c.ids[p], have, b.height, b)
		}
		a.pending[p][b.height] = b
	}
	for {
		h, name := a.head(p)
		b, ok := a.pending[p][h+1]
		if !ok {
			return nil
		}
		delete(a.pending[p], h+1)
		if b.prev != name {
			return fmt.Errorf("fork: peer %s at %d %s was sent %v", a.c.ids[p], h, name, b)
		}
		a.chains[p] = append(a.chains[p], b)
		a.c.say("%s inserts block %v", a.c.ids[p], b)
	}
}

func (a *chainApp) receive(p, from int, msg Message) ([]Message, error) {
	if msg.Kind == PeerUp {
		a.upGen[p]++
		a.sentTo[p][from] = 0 // what p sent died with from's last incarnation
		h, name := a.head(p)
		var out []Message
		for q := range a.c.ids {
			if q == p {
				continue
			}
			m, err := a.data(p, q, fmt.Sprintf("H 0 %d %s", h, name))
			if err != nil {
				continue // q has not come up here yet; it announces itself
			}
			out = append(out, m)
		}
		if a.round[p] != 0 { // a PeerUp makes the round stale: ask again
			return append(out, a.startRound(p)...), nil
		}
		return out, nil
	}
	text := string(msg.Payload)
	op, rest, _ := strings.Cut(text, " ")
	switch op {
	case "B":
		b, err := parseBlocks(rest)
		if err != nil {
			return nil, err
		}
		return nil, a.accept(p, b)
	case "H", "Q":
		round, height, name, err := parseHead(rest)
		if err != nil {
			return nil, fmt.Errorf("bad %q: %w", text, err)
		}
		var out []Message
		mine, head := a.head(p)
		if height <= mine {
			if height > 0 && a.chains[p][height-1].name != name {
				return nil, fmt.Errorf("fork: peer %s has %v at height %d, peer %s %s",
					a.c.ids[p], a.chains[p][height-1], height, a.c.ids[from], name)
			}
			if start := max(height, a.sentTo[p][from]); start < mine {
				m, err := a.data(p, from, "B "+blocksString(a.chains[p][start:]))
				if err != nil {
					return nil, err
				}
				out = append(out, m)
				a.sentTo[p][from] = mine
			}
		}
		if op == "Q" {
			m, err := a.data(p, from, fmt.Sprintf("A %d %d %s", round, mine, head))
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
		return out, nil
	case "A":
		round, height, _, err := parseHead(rest)
		if err != nil {
			return nil, fmt.Errorf("bad %q: %w", text, err)
		}
		if round == a.round[p] {
			if _, dup := a.answers[p][from]; !dup {
				a.answers[p][from] = height
			}
		}
		return nil, nil
	}
	return nil, fmt.Errorf("unknown DATA %q", text)
}

// startRound asks every peer for its head.
func (a *chainApp) startRound(p int) []Message {
	a.rounds++
	a.round[p], a.roundGen[p], a.answers[p] = a.rounds, a.upGen[p], map[int]int{}
	h, name := a.head(p)
	var out []Message
	for q := range a.c.ids {
		if q != p {
			if m, err := a.data(p, q, fmt.Sprintf("Q %d %d %s", a.rounds, h, name)); err == nil {
				out = append(out, m)
			}
		}
	}
	a.c.say("%s starts sync round %d at height %d", a.c.ids[p], a.rounds, h)
	return out
}

// ready reports whether holder p may append now; if a sync round is due
// it starts it, or finishes it when every peer has answered.
func (a *chainApp) ready(p int) (bool, error) {
	if a.noSync || a.synced[p] == a.upGen[p] {
		return true, nil
	}
	if a.round[p] == 0 || a.roundGen[p] != a.upGen[p] {
		return false, a.c.send(p, a.startRound(p))
	}
	if len(a.answers[p]) < len(a.c.ids)-1 {
		return false, nil
	}
	mine, _ := a.head(p)
	for q, h := range a.answers[p] {
		if h > mine {
			return false, fmt.Errorf("peer %s answered height %d, but %s is at %d after its blocks", a.c.ids[q], h, a.c.ids[p], mine)
		}
	}
	a.synced[p], a.round[p] = a.roundGen[p], 0
	return a.synced[p] == a.upGen[p], nil
}

// commit makes holder p's next block, persists it and releases with it.
func (a *chainApp) commit(p int) error {
	h, name := a.head(p)
	if len(a.pending[p]) > 0 {
		return fmt.Errorf("peer %s granted at height %d with blocks still waiting for a gap: %v", a.c.ids[p], h, a.pending[p])
	}
	a.made++
	b := chainBlock{height: h + 1, name: fmt.Sprintf("%s.%d.%d", a.c.ids[p], a.c.inc[p], a.made), prev: name}
	a.chains[p] = append(a.chains[p], b)
	a.committed[b.name] = b.height
	a.c.say("%s appends block %v", a.c.ids[p], b)
	return a.c.release(p, []byte(blocksString([]chainBlock{b})))
}

// check: no two peers hold different blocks at one height.
func (a *chainApp) check() error {
	longest := 0
	for _, ch := range a.chains {
		longest = max(longest, len(ch))
	}
	for h := range longest {
		var name string
		for p, ch := range a.chains {
			if h >= len(ch) {
				continue
			}
			if name == "" {
				name = ch[h].name
			} else if ch[h].name != name {
				return fmt.Errorf("fork at height %d: %s has %v, another peer %s", h+1, a.c.ids[p], ch[h], name)
			}
		}
	}
	return nil
}

// converged: after the quiet phase every chain is the same and holds every
// committed block at its height.
func (a *chainApp) converged() error {
	for p, ch := range a.chains {
		if !slices.Equal(ch, a.chains[0]) {
			return fmt.Errorf("chains differ at the end: %s has %d blocks, %s %d", a.c.ids[p], len(ch), a.c.ids[0], len(a.chains[0]))
		}
	}
	for name, h := range a.committed {
		if h > len(a.chains[0]) || a.chains[0][h-1].name != name {
			return fmt.Errorf("committed block %s at height %d is not in the final chain", name, h)
		}
	}
	return nil
}

// parseHead parses "round height [name]" (no name at height 0).
func parseHead(s string) (round, height int, name string, err error) {
	f := strings.Fields(s)
	if len(f) < 2 || len(f) > 3 {
		return 0, 0, "", fmt.Errorf("%d fields", len(f))
	}
	if round, err = strconv.Atoi(f[0]); err == nil {
		height, err = strconv.Atoi(f[1])
	}
	if len(f) == 3 {
		name = f[2]
	}
	return round, height, name, err
}

func blocksString(bs []chainBlock) string {
	parts := make([]string, len(bs))
	for i, b := range bs {
		parts[i] = b.String()
	}
	return strings.Join(parts, ",")
}

func parseBlocks(s string) ([]chainBlock, error) {
	var out []chainBlock
	for _, part := range strings.Split(s, ",") {
		f := strings.Split(part, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("bad block %q", part)
		}
		h, err := strconv.Atoi(f[0])
		if err != nil {
			return nil, fmt.Errorf("bad block %q: %w", part, err)
		}
		out = append(out, chainBlock{height: h, name: f[1], prev: f[2]})
	}
	return out, nil
}

// TestReplicatedChainsNeverFork walks groups of 2 to 5 peers with the
// replicated chain on top, crashes in every seed (some of the holder, some
// between the deliveries of its release), under both algorithms. No two
// peers may ever hold different blocks at one height; at the end every
// chain is the same and holds every block a holder released.
func TestReplicatedChainsNeverFork(t *testing.T) { runWalks(t, "TestReplicatedChainsNeverFork") }
