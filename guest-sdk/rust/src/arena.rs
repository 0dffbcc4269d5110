//! The component's global allocator: a bump allocator over a static arena, which starts over
//! once a call has finished (wasm32 only; the bump logic itself is plain code, unit-tested
//! natively).
//!
//! Why not a general-purpose allocator: the host normally runs every evaluation in a fresh
//! instance and throws it away afterwards, so nothing allocated ever needs to be freed for
//! reuse. Why a static arena: a heap that starts empty must `memory.grow` on its first
//! allocation, and growing linear memory on a fresh instance costs about 9 µs, as much as the
//! rest of an evaluation. The arena is zero-initialised (`.bss`), so it is part of the
//! module's initial memory without adding bytes to the component, and with copy-on-write
//! memory images its untouched pages cost nothing.
//!
//! Only when the arena is exhausted does the allocator fall back to `memory.grow`, bumping
//! through the grown pages the same way. Within a call it frees nothing, except that the most
//! recent allocation of a region can shrink, grow in place or be given back (which serves the
//! common push-to-a-`Vec` and temporary-buffer patterns).
//!
//! # Reused instances
//!
//! The host may also serve many calls from one instance (`Policy::reusable_instance`, and
//! later a per-policy reuse option). A bump allocator that never frees would then leak every
//! call's arguments, settings and outcome until the instance ran out of memory, so the arena
//! starts over between calls:
//!
//! 1. the SDK's export glue ([`crate::export`]) calls [`finish_call`] when the policy's code
//!    has returned: it only sets a flag;
//! 2. the generated bindings then lower the result (allocating lists through the global
//!    allocator, which ignores the flag), the host reads it and calls the export's
//!    post-return function, which frees it (`dealloc`: at most moves a bump pointer back);
//! 3. the next call's first allocation made *by the host* (`cabi_realloc`, for its
//!    arguments), or the next export's entry when it has no arguments in memory, calls
//!    [`begin_call`], which sees the flag, points both regions back at their start (the
//!    arena, and the pages grown earlier, so a reused instance grows memory only for a call
//!    bigger than any before) and clears the flag.
//!
//! Starting over at the first allocation of any kind after the flag would be wrong: the
//! bindings allocate the lowered result's lists after the policy's code has returned, and
//! starting over there would place them on top of the outcome's strings. Post-return's
//! `dealloc`s all come before the next `begin_call`, so none can give back memory that a
//! later call has reused.
//!
//! One exception: `init` on an instance the host will reuse keeps its parsed settings with
//! [`keep_allocations`], which moves the regions' starting points past them, so later calls
//! start over *after* the settings (a few hundred bytes, once per instance).
//!
//! Sound because nothing else allocated during a call is used after it: the host has read the
//! result before post-return runs, post-return runs before the next call, and the SDK keeps
//! no heap data in statics. Policies must not either (a `static` holding a `String` or a
//! `Vec`, a lazily built cache): with fresh instances such state is useless anyway, and
//! under reuse it would be overwritten by the next call. A component whose exports do not go
//! through [`crate::export`] (one that implements the generated `Guest` trait itself and
//! does not wrap its exports in [`crate::export::call`]) never sets the flag, so its
//! allocator never starts over: it behaves as a plain bump allocator.

/// Size of the WebAssembly page that `memory.grow` counts in.
const PAGE_SIZE: usize = 65_536;

fn align_up(address: usize, align: usize) -> Option<usize> {
    Some(address.checked_add(align - 1)? & !(align - 1))
}

/// One bump region: `next` is the first free byte, `end` one past the last usable byte, and
/// `start` where `next` goes back to when a call has finished. All zero: no region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Region {
    start: usize,
    next: usize,
    end: usize,
}

impl Region {
    const NONE: Region = Region { start: 0, next: 0, end: 0 };

    /// Bumps `size` bytes at `align` from the region, or `None` when they do not fit.
    fn bump(&mut self, size: usize, align: usize) -> Option<usize> {
        let start = align_up(self.next, align)?;
        let next = start.checked_add(size)?;
        if next > self.end {
            return None;
        }
        self.next = next;
        Some(start)
    }

    /// Whether `[ptr, ptr + size)` is the region's most recent allocation.
    fn is_last(&self, ptr: usize, size: usize) -> bool {
        ptr >= self.start && ptr.checked_add(size) == Some(self.next)
    }
}

/// The allocator's state: the static arena, the pages grown beyond it, and whether a call
/// has finished since the regions last started over. Independent of wasm: the caller says
/// where the arena is and how to grow memory, so the logic is testable natively.
#[derive(Debug)]
pub(crate) struct Heap {
    /// The static arena.
    arena: Region,
    /// Pages obtained from `memory.grow`, contiguous, at the end of linear memory; none until
    /// the arena first overflows.
    grown: Region,
    /// Set by [`Heap::finish_call`], cleared by [`Heap::begin_call`].
    call_finished: bool,
}

impl Heap {
    /// A heap without an arena yet (see [`Heap::has_arena`]).
    pub(crate) const EMPTY: Heap = Heap { arena: Region::NONE, grown: Region::NONE, call_finished: false };

    pub(crate) fn has_arena(&self) -> bool {
        self.arena.end != 0
    }

    /// Bumps from `[start, start + len)` before anything else.
    pub(crate) fn set_arena(&mut self, start: usize, len: usize) {
        self.arena = Region { start, next: start, end: start + len };
    }

    /// Notes that a call has finished: the next [`Heap::begin_call`] starts over.
    #[inline]
    pub(crate) fn finish_call(&mut self) {
        self.call_finished = true;
    }

    /// Starts a call: if the previous one has finished, every region starts over (nothing
    /// allocated before is in use any more), the grown pages included.
    #[inline]
    pub(crate) fn begin_call(&mut self) {
        if self.call_finished {
            self.call_finished = false;
            self.arena.next = self.arena.start;
            self.grown.next = self.grown.start;
        }
    }

    /// Keeps everything allocated so far for the instance's life: later calls start over
    /// after it instead of at the regions' beginnings. Used once, by `init` on an instance
    /// the host will reuse, to keep the parsed settings (see [`crate::export`]).
    pub(crate) fn keep(&mut self) {
        self.arena.start = self.arena.next;
        self.grown.start = self.grown.next;
    }

    /// Allocates `size` bytes at `align` (a power of two): from the arena, else from the grown
    /// pages, else from pages newly obtained through `grow`, which is given a number of pages
    /// and returns the byte address of the first, or `None` when memory cannot grow.
    pub(crate) fn alloc(
        &mut self,
        size: usize,
        align: usize,
        grow: impl FnMut(usize) -> Option<usize>,
    ) -> Option<usize> {
        if let Some(ptr) = self.arena.bump(size, align) {
            return Some(ptr);
        }
        self.alloc_beyond_arena(size, align, grow)
    }

    fn alloc_beyond_arena(
        &mut self,
        size: usize,
        align: usize,
        mut grow: impl FnMut(usize) -> Option<usize>,
    ) -> Option<usize> {
        if let Some(ptr) = self.grown.bump(size, align) {
            return Some(ptr);
        }
        // Twice at most: the second time only if something other than this allocator grew
        // memory since the grown region was last extended.
        for _ in 0..2 {
            let pages = if self.grown.end == 0 {
                // Page starts are 64 KiB-aligned: only a larger alignment needs more room.
                size.checked_add(align.saturating_sub(PAGE_SIZE))?.div_ceil(PAGE_SIZE)
            } else {
                // Extend the grown region just enough, assuming the new pages follow it.
                let needed_end = align_up(self.grown.next, align)?.checked_add(size)?;
                needed_end.saturating_sub(self.grown.end).div_ceil(PAGE_SIZE)
            }
            .max(1);
            let base = grow(pages)?;
            let new_end = base.checked_add(pages.checked_mul(PAGE_SIZE)?)?;
            if self.grown.end != 0 && base == self.grown.end {
                self.grown.end = new_end;
            } else {
                // The first grown pages, or pages that do not follow the grown region:
                // bump from these from now on (and start over in them between calls).
                self.grown = Region { start: base, next: base, end: new_end };
            }
            if let Some(ptr) = self.grown.bump(size, align) {
                return Some(ptr);
            }
        }
        None
    }

    /// Gives back `[ptr, ptr + size)` if it is the most recent allocation of its region;
    /// anything else stays allocated until the call finishes.
    pub(crate) fn dealloc(&mut self, ptr: usize, size: usize) {
        if self.arena.is_last(ptr, size) {
            self.arena.next = ptr;
        } else if self.grown.is_last(ptr, size) {
            self.grown.next = ptr;
        }
    }

    /// Resizes `[ptr, ptr + old_size)` to `new_size` bytes without moving it, which works when
    /// it is the most recent allocation of its region and the region has room, or when it
    /// shrinks. Returns whether it did.
    pub(crate) fn resize_in_place(&mut self, ptr: usize, old_size: usize, new_size: usize) -> bool {
        for region in [&mut self.arena, &mut self.grown] {
            if region.is_last(ptr, old_size) {
                return match ptr.checked_add(new_size) {
                    Some(new_next) if new_next <= region.end => {
                        region.next = new_next;
                        true
                    }
                    _ => new_size <= old_size,
                };
            }
        }
        new_size <= old_size
    }
}

/// Starts a call (see the module documentation): called by `cabi_realloc` and on entry to
/// each export.
#[inline]
pub(crate) fn begin_call() {
    #[cfg(target_arch = "wasm32")]
    wasm::with_state(Heap::begin_call);
}

/// Notes that the current call has finished (see the module documentation): called by the
/// export glue just before it returns the outcome.
#[inline]
pub(crate) fn finish_call() {
    #[cfg(target_arch = "wasm32")]
    wasm::with_state(Heap::finish_call);
}

/// Keeps what the current call has allocated so far beyond the end of the call (see
/// [`Heap::keep`]).
#[inline]
pub(crate) fn keep_allocations() {
    #[cfg(target_arch = "wasm32")]
    wasm::with_heap(Heap::keep);
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use core::alloc::{GlobalAlloc, Layout};
    use core::arch::wasm32;
    use core::cell::UnsafeCell;
    use core::ptr;

    use super::{Heap, PAGE_SIZE};

    /// Size of the static arena: room for a typical request, its settings and a parsed JSON
    /// body of a few kilobytes.
    const ARENA_SIZE: usize = 128 * 1024;

    #[repr(C, align(16))]
    struct Arena([u8; ARENA_SIZE]);

    /// The allocator. Sound because a component instance is single-threaded: nothing else
    /// can run while an allocation is in progress.
    struct BumpAllocator {
        arena: UnsafeCell<Arena>,
        heap: UnsafeCell<Heap>,
    }

    unsafe impl Sync for BumpAllocator {}

    #[global_allocator]
    static ALLOCATOR: BumpAllocator =
        BumpAllocator { arena: UnsafeCell::new(Arena([0; ARENA_SIZE])), heap: UnsafeCell::new(Heap::EMPTY) };

    /// Runs `f` on the allocator's state as it is (without an arena before the first
    /// allocation, which is fine for starting and finishing calls).
    #[inline]
    pub(super) fn with_state<R>(f: impl FnOnce(&mut Heap) -> R) -> R {
        // SAFETY: as for `with_heap`.
        f(unsafe { &mut *ALLOCATOR.heap.get() })
    }

    /// Runs `f` on the allocator's state, pointed at the arena on first use. The reference
    /// cannot escape `f`, and `f` never re-enters the allocator, so it is the only one.
    #[inline]
    pub(super) fn with_heap<R>(f: impl FnOnce(&mut Heap) -> R) -> R {
        // SAFETY: a component instance is single-threaded and `f` does not allocate, so no
        // other reference to the state exists while `f` runs.
        let heap = unsafe { &mut *ALLOCATOR.heap.get() };
        if !heap.has_arena() {
            heap.set_arena(ALLOCATOR.arena.get() as usize, ARENA_SIZE);
        }
        f(heap)
    }

    /// Grows linear memory by `pages`, returning the address of the first new byte.
    fn grow(pages: usize) -> Option<usize> {
        match wasm32::memory_grow(0, pages) {
            usize::MAX => None,
            previous => Some(previous * PAGE_SIZE),
        }
    }

    unsafe impl GlobalAlloc for BumpAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            with_heap(|heap| heap.alloc(layout.size(), layout.align(), grow))
                .map_or(ptr::null_mut(), |address| address as *mut u8)
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            with_heap(|heap| heap.dealloc(ptr as usize, layout.size()));
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if with_heap(|heap| heap.resize_in_place(ptr as usize, layout.size(), new_size)) {
                return ptr;
            }
            // SAFETY: `layout.align()` is a valid alignment and `new_size` is non-zero.
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            let new_ptr = unsafe { self.alloc(new_layout) };
            if !new_ptr.is_null() {
                // SAFETY: both blocks are live, distinct, and at least `layout.size()` long.
                unsafe { ptr::copy_nonoverlapping(ptr, new_ptr, layout.size()) };
                // The old block goes back if it ended its region (e.g. the arena's last
                // allocation, moved to the grown pages).
                unsafe { self.dealloc(ptr, layout) };
            }
            new_ptr
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const ARENA_START: usize = 0x1_0000;
    const ARENA_LEN: usize = 128 * 1024;

    /// A fake linear memory: only its size, in pages, and how often it grew.
    struct Memory {
        pages: usize,
        grows: usize,
    }

    impl Memory {
        /// Memory that ends a page after the arena, like a module's initial memory.
        fn new() -> Memory {
            Memory { pages: (ARENA_START + ARENA_LEN) / PAGE_SIZE + 1, grows: 0 }
        }

        fn grow(&mut self, pages: usize) -> Option<usize> {
            self.grows += 1;
            let previous = self.pages;
            self.pages += pages;
            Some(previous * PAGE_SIZE)
        }
    }

    fn heap() -> Heap {
        let mut heap = Heap::EMPTY;
        heap.set_arena(ARENA_START, ARENA_LEN);
        heap
    }

    fn alloc(heap: &mut Heap, memory: &mut Memory, size: usize, align: usize) -> usize {
        heap.alloc(size, align, |pages| memory.grow(pages)).expect("allocation")
    }

    #[test]
    fn allocations_bump_through_the_arena_aligned() {
        let (mut heap, mut memory) = (heap(), Memory::new());
        assert_eq!(alloc(&mut heap, &mut memory, 3, 1), ARENA_START);
        assert_eq!(alloc(&mut heap, &mut memory, 8, 8), ARENA_START + 8);
        assert_eq!(alloc(&mut heap, &mut memory, 1, 1), ARENA_START + 16);
        assert_eq!(alloc(&mut heap, &mut memory, 32, 32), ARENA_START + 32);
        assert_eq!(memory.grows, 0);
    }

    #[test]
    fn kept_allocations_survive_later_calls() {
        let (mut heap, mut memory) = (heap(), Memory::new());
        heap.begin_call();
        let kept = alloc(&mut heap, &mut memory, 100, 4);
        heap.keep();
        // Given back after `keep`: stays, since it is below the new start.
        heap.dealloc(kept, 100);
        heap.finish_call();
        for _ in 0..3 {
            heap.begin_call();
            let next = alloc(&mut heap, &mut memory, 100, 4);
            assert!(next >= kept + 100, "a later call overwrote kept memory");
            heap.finish_call();
        }
        // Kept pages grown beyond the arena survive too.
        heap.begin_call();
        let big = alloc(&mut heap, &mut memory, ARENA_LEN, 4);
        heap.keep();
        heap.finish_call();
        heap.begin_call();
        let after = alloc(&mut heap, &mut memory, ARENA_LEN, 4);
        assert!(after >= big + ARENA_LEN || after + ARENA_LEN <= big, "overlaps the kept block");
    }

    #[test]
    fn a_finished_call_starts_over_at_the_next_begin() {
        let (mut heap, mut memory) = (heap(), Memory::new());
        heap.begin_call();
        let first = alloc(&mut heap, &mut memory, 100, 4);
        heap.finish_call();
        heap.begin_call();
        assert_eq!(alloc(&mut heap, &mut memory, 100, 4), first);
    }

    #[test]
    fn begin_without_finish_keeps_what_is_allocated() {
        // `cabi_realloc` begins a call for every argument, and the host calls it during
        // import calls too: only a finished call may start over.
        let (mut heap, mut memory) = (heap(), Memory::new());
        heap.begin_call();
        let a = alloc(&mut heap, &mut memory, 100, 4);
        heap.begin_call();
        let b = alloc(&mut heap, &mut memory, 100, 4);
        assert!(b >= a + 100);
    }

    #[test]
    fn allocations_after_finish_do_not_start_over() {
        // After `finish_call` the generated bindings still allocate the lowered result, which
        // the host reads later: those allocations must not overwrite the outcome's strings.
        let (mut heap, mut memory) = (heap(), Memory::new());
        heap.begin_call();
        let outcome = alloc(&mut heap, &mut memory, 64, 1);
        heap.finish_call();
        let lowered = alloc(&mut heap, &mut memory, 48, 4);
        assert!(lowered >= outcome + 64);
        // Post-return frees them (in any order); the next call starts over all the same.
        heap.dealloc(lowered, 48);
        heap.dealloc(outcome, 64);
        heap.begin_call();
        assert_eq!(alloc(&mut heap, &mut memory, 8, 4), ARENA_START);
    }

    #[test]
    fn only_the_most_recent_allocation_is_given_back() {
        let (mut heap, mut memory) = (heap(), Memory::new());
        let a = alloc(&mut heap, &mut memory, 16, 8);
        let b = alloc(&mut heap, &mut memory, 16, 8);
        heap.dealloc(a, 16);
        assert_eq!(alloc(&mut heap, &mut memory, 16, 8), b + 16);
        heap.dealloc(b + 16, 16);
        assert_eq!(alloc(&mut heap, &mut memory, 16, 8), b + 16);
    }

    #[test]
    fn the_last_allocation_resizes_in_place() {
        let (mut heap, mut memory) = (heap(), Memory::new());
        let a = alloc(&mut heap, &mut memory, 16, 8);
        assert!(heap.resize_in_place(a, 16, 1024));
        assert_eq!(alloc(&mut heap, &mut memory, 1, 1), a + 1024);
        // Not the last any more: only shrinking works (without giving anything back).
        assert!(heap.resize_in_place(a, 1024, 8));
        assert!(!heap.resize_in_place(a, 1024, 2048));
        // The last one cannot grow past the arena.
        let b = alloc(&mut heap, &mut memory, 16, 8);
        assert!(!heap.resize_in_place(b, 16, ARENA_LEN));
    }

    #[test]
    fn overflow_grows_memory_and_small_allocations_keep_using_the_arena() {
        let (mut heap, mut memory) = (heap(), Memory::new());
        let memory_end = memory.pages * PAGE_SIZE;
        let small = alloc(&mut heap, &mut memory, 1000, 8);
        let big = alloc(&mut heap, &mut memory, 200 * 1024, 8);
        assert_eq!(big, memory_end);
        assert_eq!(memory.grows, 1);
        assert_eq!(memory.pages * PAGE_SIZE, memory_end + 4 * PAGE_SIZE);
        assert_eq!(alloc(&mut heap, &mut memory, 8, 8), small + 1000);
        // The grown region keeps its tail for the next allocation that misses the arena.
        let next_big = alloc(&mut heap, &mut memory, ARENA_LEN, 8);
        assert_eq!(next_big, big + 200 * 1024);
        assert_eq!(memory.grows, 2, "extended by what did not fit");
        assert_eq!(memory.pages * PAGE_SIZE, memory_end + 6 * PAGE_SIZE);
    }

    #[test]
    fn reused_calls_reuse_grown_pages_instead_of_growing_again() {
        let (mut heap, mut memory) = (heap(), Memory::new());
        let call = |heap: &mut Heap, memory: &mut Memory| {
            heap.begin_call();
            let mut blocks = Vec::new();
            for i in 0..50 {
                blocks.push(alloc(heap, memory, 7_000 + i, 8));
            }
            heap.finish_call();
            blocks
        };
        let first = call(&mut heap, &mut memory);
        let (pages, grows) = (memory.pages, memory.grows);
        assert!(grows > 0, "the call needed more than the arena");
        for _ in 0..10_000 {
            assert_eq!(call(&mut heap, &mut memory), first);
        }
        assert_eq!((memory.pages, memory.grows), (pages, grows));
    }

    #[test]
    fn pages_grown_by_someone_else_are_skipped() {
        let (mut heap, mut memory) = (heap(), Memory::new());
        let a = alloc(&mut heap, &mut memory, ARENA_LEN + 1, 8);
        memory.pages += 3; // memory.grow outside the allocator
        let foreign_end = memory.pages * PAGE_SIZE;
        let b = alloc(&mut heap, &mut memory, ARENA_LEN + 1, 8);
        assert_eq!(b, foreign_end);
        assert!(b > a && memory.pages * PAGE_SIZE > b + ARENA_LEN);
        heap.finish_call();
        heap.begin_call();
        // The grown region is now the one after the foreign pages.
        let grows = memory.grows;
        assert_eq!(alloc(&mut heap, &mut memory, ARENA_LEN + 1, 8), b);
        assert_eq!(memory.grows, grows);
    }

    #[test]
    fn large_alignments_are_honoured_in_grown_pages() {
        let (mut heap, mut memory) = (heap(), Memory::new());
        let a = alloc(&mut heap, &mut memory, 10, 4 * PAGE_SIZE);
        assert_eq!(a % (4 * PAGE_SIZE), 0);
        assert!(memory.pages * PAGE_SIZE >= a + 10);
    }

    #[test]
    fn failures_return_none() {
        let mut heap = heap();
        assert_eq!(heap.alloc(ARENA_LEN + 1, 8, |_| None), None);
        assert_eq!(heap.alloc(usize::MAX - 4, 8, |_| None), None);
        assert_eq!(heap.alloc(16, usize::MAX / 2 + 1, |_| None), None);
        // The arena still serves what fits.
        assert_eq!(heap.alloc(8, 8, |_| None), Some(ARENA_START));
    }
}
