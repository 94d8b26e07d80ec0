//! The RFC 9162 Merkle tree: leaf and node hashes, roots, inclusion and consistency proofs
//! and their verification. Pure: the tree's stored hashes reach it through a closure.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// SHA-256(0x00 || leaf): the hash of a leaf (RFC 9162 §2.1.1).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(leaf);
    hasher.finalize().into()
}

/// SHA-256(0x01 || left || right): the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two smaller than `n` (n > 1).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// A tree grown one leaf at a time, keeping only the roots of its perfect subtrees (at
/// most one per bit of the size): what a sequencer or a verifier walking every leaf needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    /// Roots of the perfect subtrees covering `0..size`, largest (leftmost) first.
    peaks: Vec<Hash>,
}

impl CompactRange {
    /// From the roots of the perfect subtrees of a tree of `size` leaves, largest first (as
    /// [`perfect_subtrees`] lists them).
    pub fn from_peaks(size: u64, peaks: Vec<Hash>) -> Option<Self> {
        (peaks.len() == size.count_ones() as usize).then_some(Self { size, peaks })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds a leaf hash; answers the perfect subtrees completed by it, as
    /// `(level, index, hash)` with level 1 the parents of leaves.
    pub fn push(&mut self, leaf: Hash) -> Vec<(u32, u64, Hash)> {
        let mut completed = Vec::new();
        let mut hash = leaf;
        let mut level = 0;
        let mut index = self.size;
        // Each trailing one bit of the old size is a peak of equal height to merge with.
        while (self.size >> level) & 1 == 1 {
            let Some(left) = self.peaks.pop() else { break };
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            completed.push((level, index, hash));
        }
        self.peaks.push(hash);
        self.size += 1;
        completed
    }

    /// The tree's root hash.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(mut root) = peaks.next().copied() else { return empty_root() };
        for peak in peaks {
            root = node_hash(peak, &root);
        }
        root
    }
}

/// The perfect subtrees that cover a tree of `size` leaves, largest first, as
/// `(level, index)`: the stored nodes a [`CompactRange`] starts from.
pub fn perfect_subtrees(size: u64) -> Vec<(u32, u64)> {
    let mut subtrees = Vec::new();
    let mut start = 0u64;
    for level in (0..64u32).rev() {
        if (size >> level) & 1 == 1 {
            subtrees.push((level, start >> level));
            start += 1 << level;
        }
    }
    subtrees
}

/// Where a proof's hashes come from: the root of the perfect subtree at `level` (0 for a
/// leaf) and `index` (its position among the subtrees of that level).
pub trait Subtrees {
    type Error;
    fn perfect(&mut self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// MTH(D[start:end]) built from perfect subtrees.
fn subtree_hash<S: Subtrees>(tree: &mut S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let n = end - start;
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return tree.perfect(n.trailing_zeros(), start / n);
    }
    let k = split(n);
    let left = subtree_hash(tree, start, start + k)?;
    let right = subtree_hash(tree, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The root of the tree of the first `size` leaves.
pub fn root_of<S: Subtrees>(tree: &mut S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 { Ok(empty_root()) } else { subtree_hash(tree, 0, size) }
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 9162 §2.1.3.1),
/// from the leaf upwards. `index < size`.
pub fn inclusion_proof<S: Subtrees>(tree: &mut S, index: u64, size: u64) -> Result<Vec<Hash>, S::Error> {
    let mut path = Vec::new();
    path_in(tree, index, 0, size, &mut path)?;
    Ok(path)
}

fn path_in<S: Subtrees>(tree: &mut S, m: u64, start: u64, end: u64, path: &mut Vec<Hash>) -> Result<(), S::Error> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path_in(tree, m, start, start + k, path)?;
        path.push(subtree_hash(tree, start + k, end)?);
    } else {
        path_in(tree, m - k, start + k, end, path)?;
        path.push(subtree_hash(tree, start, start + k)?);
    }
    Ok(())
}

/// The consistency proof between the trees of `from` and `to` leaves (RFC 9162 §2.1.4.1).
/// `from <= to`; empty when `from` is 0 or equal to `to`.
pub fn consistency_proof<S: Subtrees>(tree: &mut S, from: u64, to: u64) -> Result<Vec<Hash>, S::Error> {
    let mut proof = Vec::new();
    if from > 0 && from < to {
        subproof(tree, from, 0, to, true, &mut proof)?;
    }
    Ok(proof)
}

fn subproof<S: Subtrees>(
    tree: &mut S,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    proof: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if m == n {
        if !whole {
            proof.push(subtree_hash(tree, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(tree, m, start, start + k, whole, proof)?;
        proof.push(subtree_hash(tree, start + k, end)?);
    } else {
        subproof(tree, m - k, start + k, end, false, proof)?;
        proof.push(subtree_hash(tree, start, start + k)?);
    }
    Ok(())
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && &r == root
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2): the tree of `to` leaves with root
/// `to_root` extends the tree of `from` leaves with root `from_root`.
pub fn verify_consistency(from: u64, to: u64, from_root: &Hash, to_root: &Hash, proof: &[Hash]) -> bool {
    if from > to {
        return false;
    }
    if from == to {
        return proof.is_empty() && from_root == to_root;
    }
    if from == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        path.push(*from_root);
    }
    path.extend_from_slice(proof);
    let Some(first) = path.first().copied() else { return false };
    let (mut fn_, mut sn) = (from - 1, to - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (first, first);
    for c in &path[1..] {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    &fr == from_root && &sr == to_root && sn == 0
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;

    use super::*;

    /// A tree held in memory: every perfect subtree computed from its leaves.
    struct Memory {
        nodes: HashMap<(u32, u64), Hash>,
    }

    impl Memory {
        fn of(leaves: &[Hash]) -> Self {
            let mut range = CompactRange::default();
            let mut nodes = HashMap::new();
            for (i, leaf) in leaves.iter().enumerate() {
                nodes.insert((0, i as u64), *leaf);
                for (level, index, hash) in range.push(*leaf) {
                    nodes.insert((level, index), hash);
                }
            }
            Self { nodes }
        }
    }

    impl Subtrees for Memory {
        type Error = Infallible;
        fn perfect(&mut self, level: u32, index: u64) -> Result<Hash, Infallible> {
            Ok(self.nodes[&(level, index)])
        }
    }

    /// MTH straight from the RFC's recursive definition.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(format!("leaf {i}").as_bytes())).collect()
    }

    #[test]
    fn the_empty_tree_has_the_hash_of_nothing_as_its_root() {
        assert_eq!(hex(&empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    /// The RFC 6962 test vectors (leaves as hex), shared by Certificate Transparency
    /// implementations: the root of the first leaves.
    #[test]
    fn roots_match_the_certificate_transparency_test_vectors() {
        let inputs: [&[u8]; 8] = [
            b"",
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f],
        ];
        let expected = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let hashes: Vec<Hash> = inputs.iter().map(|leaf| leaf_hash(leaf)).collect();
        let mut range = CompactRange::default();
        for (i, leaf) in hashes.iter().enumerate() {
            range.push(*leaf);
            assert_eq!(hex(&range.root()), expected[i], "root of {} leaves", i + 1);
            assert_eq!(range.root(), reference_root(&hashes[..=i]));
        }
    }

    #[test]
    fn every_inclusion_proof_verifies_and_a_wrong_one_does_not() {
        for n in 1..=33u64 {
            let leaves = leaves(n as usize);
            let mut tree = Memory::of(&leaves);
            let root = root_of(&mut tree, n).unwrap();
            assert_eq!(root, reference_root(&leaves));
            for m in 0..n {
                let proof = inclusion_proof(&mut tree, m, n).unwrap();
                assert!(verify_inclusion(&leaves[m as usize], m, n, &proof, &root), "leaf {m} of {n}");
                let other = leaf_hash(b"another leaf");
                assert!(!verify_inclusion(&other, m, n, &proof, &root));
                if n > 1 {
                    assert!(!verify_inclusion(&leaves[m as usize], (m + 1) % n, n, &proof, &root));
                }
            }
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_rewritten_past_does_not() {
        for to in 1..=33u64 {
            let leaves = leaves(to as usize);
            let mut tree = Memory::of(&leaves);
            let to_root = root_of(&mut tree, to).unwrap();
            for from in 1..=to {
                let from_root = reference_root(&leaves[..from as usize]);
                let proof = consistency_proof(&mut tree, from, to).unwrap();
                assert!(verify_consistency(from, to, &from_root, &to_root, &proof), "{from} -> {to}");
                let mut rewritten = leaves.clone();
                rewritten[0] = leaf_hash(b"rewritten");
                let mut forged = Memory::of(&rewritten);
                let forged_root = root_of(&mut forged, to).unwrap();
                let forged_proof = consistency_proof(&mut forged, from, to).unwrap();
                assert!(!verify_consistency(from, to, &from_root, &forged_root, &forged_proof));
            }
        }
    }

    #[test]
    fn a_compact_range_starts_again_from_its_stored_peaks() {
        let leaves = leaves(45);
        let mut tree = Memory::of(&leaves);
        for size in 0..45u64 {
            let peaks = perfect_subtrees(size).into_iter().map(|(l, i)| tree.perfect(l, i).unwrap()).collect();
            let mut range = CompactRange::from_peaks(size, peaks).unwrap();
            for leaf in &leaves[size as usize..] {
                range.push(*leaf);
            }
            assert_eq!(range.root(), reference_root(&leaves));
        }
    }

    fn hex(hash: &Hash) -> String {
        crate::domain::consent::hex(hash)
    }
}
