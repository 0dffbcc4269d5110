//! The component's global allocator: a bump allocator over a static arena (wasm32 only).
//!
//! Why not a general-purpose allocator: the host runs every evaluation in a fresh instance
//! and throws it away afterwards, so nothing allocated ever needs to be freed for reuse. Why
//! a static arena: a heap that starts empty must `memory.grow` on its first allocation, and
//! growing linear memory on a fresh instance costs about 9 µs, as much as the rest of an
//! evaluation. The arena is zero-initialised (`.bss`), so it is part of the module's initial
//! memory without adding bytes to the component, and with copy-on-write memory images its
//! untouched pages cost nothing.
//!
//! Only when the arena is exhausted does the allocator fall back to `memory.grow`, bumping
//! through the new pages the same way. It frees nothing, except that the most recent
//! allocation can shrink, grow in place or be given back (which serves the common
//! push-to-a-`Vec` and temporary-buffer patterns).

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::UnsafeCell;
use core::ptr;

/// Size of the static arena: room for a typical request, its settings and a parsed JSON
/// body of a few kilobytes, small next to the 1 MiB stack every Rust module has.
const ARENA_SIZE: usize = 128 * 1024;

const PAGE_SIZE: usize = 65_536;

#[repr(C, align(16))]
struct Arena([u8; ARENA_SIZE]);

/// The bump region: `next` is the first free byte, `end` one past the last usable byte.
/// Both are zero until the first allocation points them at the arena.
struct Bump {
    next: usize,
    end: usize,
}

/// The allocator. Sound because a component instance is single-threaded: nothing else can
/// run while an allocation is in progress.
struct BumpAllocator {
    arena: UnsafeCell<Arena>,
    bump: UnsafeCell<Bump>,
}

unsafe impl Sync for BumpAllocator {}

#[global_allocator]
static ALLOCATOR: BumpAllocator = BumpAllocator {
    arena: UnsafeCell::new(Arena([0; ARENA_SIZE])),
    bump: UnsafeCell::new(Bump { next: 0, end: 0 }),
};

fn align_up(address: usize, align: usize) -> Option<usize> {
    Some(address.checked_add(align - 1)? & !(align - 1))
}

impl BumpAllocator {
    /// Runs `f` on the bump region, pointed at the arena on first use. The reference cannot
    /// escape `f`, and `f` never re-enters the allocator, so it is the only one.
    fn with_bump<R>(&self, f: impl FnOnce(&mut Bump) -> R) -> R {
        // SAFETY: a component instance is single-threaded and `f` does not allocate, so no
        // other reference to the region exists while `f` runs.
        let bump = unsafe { &mut *self.bump.get() };
        if bump.end == 0 {
            let start = self.arena.get() as usize;
            bump.next = start;
            bump.end = start + ARENA_SIZE;
        }
        f(bump)
    }

    /// Grows linear memory by enough pages for `size` bytes at `align`, and bumps from the new
    /// pages: they extend the current region when it ends where memory ends, else they become
    /// the region when they leave more room than the old one has left.
    fn grow(bump: &mut Bump, size: usize, align: usize) -> *mut u8 {
        let Some(needed) = size.checked_add(align) else {
            return ptr::null_mut();
        };
        let pages = needed.div_ceil(PAGE_SIZE);
        let previous = wasm32::memory_grow(0, pages);
        if previous == usize::MAX {
            return ptr::null_mut();
        }
        let base = previous * PAGE_SIZE;
        let new_end = base + pages * PAGE_SIZE;
        if bump.end == base {
            bump.end = new_end;
        } else if new_end - base > bump.end - bump.next {
            bump.next = base;
            bump.end = new_end;
        } else {
            // Keep the old region for later small allocations; this one lives alone in the
            // new pages.
            return match align_up(base, align) {
                Some(start) => start as *mut u8,
                None => ptr::null_mut(),
            };
        }
        Self::bump_from(bump, size, align)
    }

    /// Bumps `size` bytes at `align` from the region, or null when they do not fit.
    fn bump_from(bump: &mut Bump, size: usize, align: usize) -> *mut u8 {
        match align_up(bump.next, align).and_then(|start| Some((start, start.checked_add(size)?))) {
            Some((start, next)) if next <= bump.end => {
                bump.next = next;
                start as *mut u8
            }
            _ => ptr::null_mut(),
        }
    }
}

unsafe impl GlobalAlloc for BumpAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.with_bump(|bump| {
            let ptr = Self::bump_from(bump, layout.size(), layout.align());
            if ptr.is_null() {
                Self::grow(bump, layout.size(), layout.align())
            } else {
                ptr
            }
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.with_bump(|bump| {
            // Only the most recent allocation can be given back.
            if ptr as usize + layout.size() == bump.next {
                bump.next = ptr as usize;
            }
        });
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let start = ptr as usize;
        // The most recent allocation shrinks or grows in place when the region has room.
        let in_place = self.with_bump(|bump| {
            let is_last = start + layout.size() == bump.next;
            match start.checked_add(new_size) {
                Some(new_next) if is_last && new_next <= bump.end => {
                    bump.next = new_next;
                    true
                }
                _ => false,
            }
        });
        if in_place || new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: `layout.align()` is a valid alignment and `new_size` is non-zero.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new_ptr = unsafe { self.alloc(new_layout) };
        if !new_ptr.is_null() {
            // SAFETY: both blocks are live, distinct, and at least `layout.size()` long.
            unsafe { ptr::copy_nonoverlapping(ptr, new_ptr, layout.size()) };
        }
        new_ptr
    }
}
