package probe

import "math/rand/v2"

// lossRand returns false (drop) with the given percent chance.
func lossRand(percent int) bool { return rand.IntN(100) >= percent }
