//! A small deterministic generator (xorshift64*) for the benchmarks' synthetic data, so that
//! they need no `rand` and draw the same numbers on every machine.

/// xorshift64*, seeded with its state.
pub struct XorShift(pub u64);

impl XorShift {
    /// A uniform draw in [0, 1), from 53 random bits.
    pub fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        bits as f64 / (1_u64 << 53) as f64
    }

    /// A standard normal draw (Box-Muller).
    #[allow(dead_code, reason = "only the originality benchmark draws normals")]
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.next_unit();
        let v = self.next_unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}
