// Exception vectors.
//
// From the kernel itself (slots 0-7): save a TrapFrame (trap.rs) on the kernel stack and
// call `trap_entry`, which reports faults and handles interrupts taken while idle.
//
// From EL0 (slots 8-15): the running environment's active TrapFrame is at TPIDR_EL1.
// System calls below Sys::FAST_COUNT take the fast path: a call through
// SYSCALL_FAST_TABLE with the argument registers as they are, after which the environment
// resumes with x0 the result and x1-x18 as the call left them (the ABI says clobbered; fast
// calls only ever compute with the caller's own data and public kernel state, so nothing
// another environment could call secret is in them; the one exception, PctUngrant, which
// edits the grantee's tables, goes through `pct_ungrant_scrubbed` below). UpcallResume
// restores the interrupted context without saving the handler's (`el0_resume` decides the
// common case, a new entry of the caller's own, here). A slow call saves what
// survives it (SAVE_SVC) and calls `el0_svc` (YieldTo, PctReply and PctCall try a direct
// switch here first: `el0_yield`, `el0_reply`, `el0_call`; `el0_reply` saves only if it
// misses, the server's call context ending with the reply); anything else saves the whole context
// into the TrapFrame (a fault that can be delivered at once then starts its upcall
// handler: `el0_abort`) and calls `el0_trap(kind)`. Each returns the TrapFrame of
// whichever environment runs next; `el0_return` restores it.

// Stores x18-x30, sp_el0, ELR and SPSR into the TrapFrame at \f: the half every save
// path shares. \s1 and \s2 (x1 and x2, saved before it, unless named) are its scratch.
.macro SAVE_UPPER f, s1=x1, s2=x2
    stp     x18, x19, [\f, #(18 * 8)]
    stp     x20, x21, [\f, #(20 * 8)]
    stp     x22, x23, [\f, #(22 * 8)]
    stp     x24, x25, [\f, #(24 * 8)]
    stp     x26, x27, [\f, #(26 * 8)]
    stp     x28, x29, [\f, #(28 * 8)]
    mrs     \s1, sp_el0
    stp     x30, \s1, [\f, #(30 * 8)]
    mrs     \s1, elr_el1
    mrs     \s2, spsr_el1
    stp     \s1, \s2, [\f, #(32 * 8)]
.endm

.macro SAVE_FRAME
    sub     sp, sp, #(34 * 8)
    stp     x0, x1, [sp, #(0 * 8)]
    stp     x2, x3, [sp, #(2 * 8)]
    stp     x4, x5, [sp, #(4 * 8)]
    stp     x6, x7, [sp, #(6 * 8)]
    stp     x8, x9, [sp, #(8 * 8)]
    stp     x10, x11, [sp, #(10 * 8)]
    stp     x12, x13, [sp, #(12 * 8)]
    stp     x14, x15, [sp, #(14 * 8)]
    stp     x16, x17, [sp, #(16 * 8)]
    SAVE_UPPER sp
.endm

.macro RESTORE_FRAME_AND_ERET
    ldp     x10, x11, [sp, #(32 * 8)]
    msr     elr_el1, x10
    msr     spsr_el1, x11
    ldp     x30, x9, [sp, #(30 * 8)]
    msr     sp_el0, x9
    ldp     x0, x1, [sp, #(0 * 8)]
    ldp     x2, x3, [sp, #(2 * 8)]
    ldp     x4, x5, [sp, #(4 * 8)]
    ldp     x6, x7, [sp, #(6 * 8)]
    ldp     x8, x9, [sp, #(8 * 8)]
    ldp     x10, x11, [sp, #(10 * 8)]
    ldp     x12, x13, [sp, #(12 * 8)]
    ldp     x14, x15, [sp, #(14 * 8)]
    ldp     x16, x17, [sp, #(16 * 8)]
    ldp     x18, x19, [sp, #(18 * 8)]
    ldp     x20, x21, [sp, #(20 * 8)]
    ldp     x22, x23, [sp, #(22 * 8)]
    ldp     x24, x25, [sp, #(24 * 8)]
    ldp     x26, x27, [sp, #(26 * 8)]
    ldp     x28, x29, [sp, #(28 * 8)]
    add     sp, sp, #(34 * 8)
    eret
.endm

// For the switching fast paths (`el0_yield`, `el0_reply`, `el0_call`): takes the kernel lock as
// `Global::with_on` does, or if another core holds it goes to the general path (which waits
// for it, answering kicks meanwhile). x10 = this core, x11 = the lock word, x12 = the Kernel
// (unless \kernel is 0: the caller reaches it from x11, at K_VALUE). The value stored is
// the lock word's own address: any value but 0 holds the lock, and `with_on` tests a held
// lock's value only against its own core + 1, which an address never is, for re-entry.
// Each release is a `stlr` of 0 alone: a waiter sleeps with its exclusive monitor on the
// word (`cell::wait_for_release`), so the store itself wakes it, with no `sev`.
.macro LOCK held=el0_svc_saved, kernel=1
    mrs     x10, tpidrro_el0            // this core (`smp::cpu`, set at boot: boot.S)
    adrp    x11, {KERNEL}               // `Global`'s lock word, first (#[repr(C)]), on a page
                                        // boundary (`cell::Aligned`): no low bits to add
1:  ldaxr   x13, [x11]
    cbnz    x13, \held                  // held
    stxr    w13, x11, [x11]
    cbnz    w13, 1b
.if \kernel
    add     x12, x11, #{K_VALUE}
.endif
.endm

// For `el0_reply` and `el0_call`, once the environment leaving the core (slot x14, its
// state blocked, w19 = BLOCKED) is set: what `hand_over` and `run` change for the one taking
// it. \env (slot x15's Env) runnable, waiting for nothing, last run on this core (x10); the
// runnable set's bit for x14 off and x15's on; `publish_state` for both (each one's state,
// and x15's core: every other published field is as it was, disk_wait 0 for both, as
// neither waited for the disk); on[cpu] = x15. x11: the lock (the Kernel at K_VALUE);
// x13: on[]; \info: the public environment table; x\a, x\b, x\c: scratch.
.if {W_NONE} | ({INFO_SIZE} - 256)
.error "SWITCH_STATE stores xzr for Wait::None and shifts by 8 for an EnvInfo"
.endif
.macro SWITCH_STATE env, info, a, b, c
    mov     w20, #{RUNNABLE}
    strb    w20, [\env, #{E_STATE}]
    strb    wzr, [\env, #{E_WAIT}]      // Wait::None
    strb    w10, [\env, #{E_LAST_CPU}]
    ldr     x\a, [x11, #({K_VALUE} + {K_RUNNABLE})]
    mov     x\b, #1
    lsl     x\c, x\b, x14
    bic     x\a, x\a, x\c
    lsl     x\c, x\b, x15
    orr     x\a, x\a, x\c
    str     x\a, [x11, #({K_VALUE} + {K_RUNNABLE})]
    add     x\a, \info, x14, lsl #8      // (INFO_SIZE is 256)
    strb    w19, [x\a, #{I_STATE}]
    add     x\a, \info, x15, lsl #8
    strb    w20, [x\a, #{I_STATE}]
    strb    w10, [x\a, #{I_CPU}]
    str     x15, [x13, x10, lsl #3]     // on[cpu] = slot x15
.endm

// For `el0_reply` and `el0_call`, which start the other side from registers: x6-x27 from
// its TrapFrame at x30 (the rest each loads around it).
.macro LOAD_X6_X27
    ldp     x6, x7, [x30, #(6 * 8)]
    ldp     x8, x9, [x30, #(8 * 8)]
    ldp     x10, x11, [x30, #(10 * 8)]
    ldp     x12, x13, [x30, #(12 * 8)]
    ldp     x14, x15, [x30, #(14 * 8)]
    ldp     x16, x17, [x30, #(16 * 8)]
    ldp     x18, x19, [x30, #(18 * 8)]
    ldp     x20, x21, [x30, #(20 * 8)]
    ldp     x22, x23, [x30, #(22 * 8)]
    ldp     x24, x25, [x30, #(24 * 8)]
    ldp     x26, x27, [x30, #(26 * 8)]
.endm

// TTBR0 = \root with slot \slot's ASID, the slot itself (`set_user_table`, `Env::asid`). No isb:
// the eret ahead synchronizes (SCTLR_EL1.EOS is set: boot.S), and nothing before it goes
// through TTBR0.
.macro SET_TTBR0 root, slot
    orr     \root, \root, \slot, lsl #48
    msr     ttbr0_el1, \root
.endm

// The FP/SIMD registers to (`FP_SAVE`) or from (`FP_LOAD`) the `arch::FpState` at \a,
// which ends past it; \t1, \t2 scratch. (Braces doubled: this file is a format string.)
.arch_extension fp
.arch_extension simd
.macro FP_SAVE a, t1, t2
    st1     {{v0.2d-v3.2d}}, [\a], #64
    st1     {{v4.2d-v7.2d}}, [\a], #64
    st1     {{v8.2d-v11.2d}}, [\a], #64
    st1     {{v12.2d-v15.2d}}, [\a], #64
    st1     {{v16.2d-v19.2d}}, [\a], #64
    st1     {{v20.2d-v23.2d}}, [\a], #64
    st1     {{v24.2d-v27.2d}}, [\a], #64
    st1     {{v28.2d-v31.2d}}, [\a], #64
    mrs     \t1, fpsr
    mrs     \t2, fpcr
    stp     \t1, \t2, [\a]
.endm
.macro FP_LOAD a, t1, t2
    ld1     {{v0.2d-v3.2d}}, [\a], #64
    ld1     {{v4.2d-v7.2d}}, [\a], #64
    ld1     {{v8.2d-v11.2d}}, [\a], #64
    ld1     {{v12.2d-v15.2d}}, [\a], #64
    ld1     {{v16.2d-v19.2d}}, [\a], #64
    ld1     {{v20.2d-v23.2d}}, [\a], #64
    ld1     {{v24.2d-v27.2d}}, [\a], #64
    ld1     {{v28.2d-v31.2d}}, [\a], #64
    ldp     \t1, \t2, [\a]
    msr     fpsr, \t1
    msr     fpcr, \t2
.endm

// For the switching fast paths: the environment leaving the core (Env at \from) keeps its
// TPIDR_EL0, which EL0 writes at will, and the one taking it (Env at \to) gets its own
// (`arch::FpState`, as `fp_leave` does for `Kernel::run`). \t scratch.
.macro TLS_SWITCH from, to, t
    mrs     \t, tpidr_el0
    str     \t, [\from, #({E_FP} + (66 * 8))]
    ldr     \t, [\to, #({E_FP} + (66 * 8))]
    msr     tpidr_el0, \t
.endm

// For the switching fast paths, out of line: the environment leaving the core (Env at
// \env) had its FP/SIMD registers live here (EL0's access on: `arch::FpState`). They go to
// its Env, and the access goes off. \a, \t1, \t2 scratch.
.macro FP_LEAVE env, a, t1, t2
    add     \a, \env, #{E_FP}
    FP_SAVE \a, \t1, \t2
    mov     \t1, #{FP_OFF}
    msr     cpacr_el1, \t1
.endm

// Each slot is 0x80 bytes: save, then branch to the shared tail with the slot number in x1.
.macro VECTOR n
.balign 0x80
    SAVE_FRAME
    mov     x1, #\n
    b       trap_common
.endm

// Saves the whole EL0 context into the active TrapFrame, then el0_trap(kind).
.macro EL0_SAVE kind
    stp     x0, x1, [sp, #-16]!
    mrs     x0, tpidr_el1
    stp     x2, x3, [x0, #(2 * 8)]
    stp     x4, x5, [x0, #(4 * 8)]
    stp     x6, x7, [x0, #(6 * 8)]
    stp     x8, x9, [x0, #(8 * 8)]
    stp     x10, x11, [x0, #(10 * 8)]
    stp     x12, x13, [x0, #(12 * 8)]
    stp     x14, x15, [x0, #(14 * 8)]
    stp     x16, x17, [x0, #(16 * 8)]
    SAVE_UPPER x0
    ldp     x1, x2, [sp], #16
    stp     x1, x2, [x0]
    mov     x0, #\kind
    mov     x29, xzr
    mov     x30, xzr
    bl      el0_trap
    b       el0_return
.endm

// A slow system call: only what the ABI keeps (x19-x30, sp, pc, flags), the arguments
// (x0-x5), the number (x8) and x18; x6, x7 and x9-x17 are the caller's to lose (exo's
// calling convention), so the frame keeps older values of its own there. x9 = the frame.
.macro SAVE_SVC
    mrs     x9, tpidr_el1
    stp     x0, x1, [x9]
    stp     x2, x3, [x9, #(2 * 8)]
    stp     x4, x5, [x9, #(4 * 8)]
    str     x8, [x9, #(8 * 8)]
    SAVE_UPPER x9
.endm

.macro EL0_VECTOR kind
.balign 0x80
    EL0_SAVE \kind
.endm

.section .text.vectors, "ax"
.balign 0x800
.global exception_vectors
exception_vectors:
    VECTOR 0        // current EL, SP_EL0: sync
    VECTOR 1        //   irq
    VECTOR 2        //   fiq
    VECTOR 3        //   serror
    VECTOR 4        // current EL, SP_ELx: sync
    VECTOR 5        //   irq
    VECTOR 6        //   fiq
    VECTOR 7        //   serror
.balign 0x80     // lower EL, AArch64: sync. The fast path runs here, in the slot itself.
    stp     x9, x10, [sp, #-16]         // below sp, no writeback: the fast path drops them
    mrs     x9, esr_el1
    ubfx    x9, x9, #26, #6             // EC: bits 31:26 (ISS2 above them on newer cores)
    cmp     x8, #{SYS_FAST_COUNT}
    ccmp    x9, #0x15, #0, lo           // a fast number, and an SVC from AArch64?
    b.ne    el0_sync                    // (x9 = the exception class)
    adrp    x10, SYSCALL_FAST_TABLE     // x9, x10 are the caller's to lose now
    add     x10, x10, :lo12:SYSCALL_FAST_TABLE
    ldr     x10, [x10, x8, lsl #3]
    stp     x29, x30, [sp, #-16]!
    blr     x10
    ldp     x29, x30, [sp], #16
    eret
    EL0_VECTOR 1    //   irq
    EL0_VECTOR 2    //   fiq
    EL0_VECTOR 3    //   serror
    EL0_VECTOR 2    // lower EL, AArch32 (never enabled): sync
    EL0_VECTOR 2    //   irq
    EL0_VECTOR 2    //   fiq
    EL0_VECTOR 2    //   serror

el0_sync:
    cmp     x9, #0x15                   // a system call (an SVC from AArch64)?
    b.ne    el0_abort
    cmp     x8, #{SYS_UPCALL_RESUME}
    b.eq    el0_resume
    cmp     x8, #{SYS_PCT_CALL}         // a slow one (the call first: it has the most
    b.eq    el0_call                    // to do of the three)
    cmp     x8, #{SYS_PCT_REPLY}
    b.eq    el0_reply
    cmp     x8, #{SYS_YIELD_TO}
    b.eq    el0_yield
    SAVE_SVC
el0_svc_saved:
    mov     x29, xzr
    mov     x30, xzr
    bl      el0_svc
    b       el0_return

// UpcallResume's fast path: what `upcall_resume` does in the common case, here. With the
// lock taken once, and only if the caller is in an upcall with none pending, and (when x0
// names a table) x0 is a linked, unfrozen level-3 table of its own, x1 < 512 an empty entry
// of it, and x2 a page entry `check_user_page` accepts, of normal cacheable memory, not
// writable and executable, for a data frame of its own whose count of mappings has room:
// the entry is set as `set_page` sets a new one (the frame's shares end if it is now
// mapped writable and nowhere else; its ZEROED mark goes; the table counts one entry
// more), and the interrupted context resumes. Anything else (a table, entry or frame any
// other way, a replaced entry, a non-cacheable page, an upcall pending, the lock held)
// takes `upcall_resume` in Rust, which decides it in full and gives the handler its error.
// x0-x2 are kept for it; x3-x8 and x13-x17 are scratch, as a fast call's registers are
// (the handler's x19-x30 are kept: an error goes back to it). x14 = the caller's slot,
// x16 its Env; from the table on, x4/x5/x6 = RAM's base, frames, the frame table.
// For `el0_resume` and `el0_abort`: LOCK (to \held if it is held), then x14 = the slot
// running on this core and x16 its Env, or \miss if none (destroyed meanwhile: on[cpu]
// is NONE); the lock is held at \miss. x4 is scratch.
.macro LOCKED_ENV held, miss
    LOCK    \held, 0
    add     x13, x11, #({K_VALUE} + {K_ON})
    ldr     x14, [x13, x10, lsl #3]
    cmp     x14, #{MAX_ENVS}
    b.hs    \miss
    add     x16, x11, x14, lsl #{ENV_SHIFT}
    add     x16, x16, #({K_VALUE} + {K_ENVS})
.endm

// For `el0_resume`: \out = the FrameEntry of the frame at \pa, if \pa lies in RAM (one
// test: below RAM wraps round past the end) and the frame is of kind \kind and the
// caller's (w8); else a miss. x4, x5, x6 = RAM's base, its frames, the frame table.
.macro OWN_FRAME out, pa, kind
    sub     \out, \pa, x4
    lsr     \out, \out, #12
    cmp     \out, x5
    b.hs    el0_resume_miss
    add     \out, x6, \out, lsl #4
    ldr     w15, [\out, #{F_OWNER}]
    ldrb    w17, [\out, #{F_KIND}]
    cmp     w15, w8
    ccmp    w17, #\kind, #0, eq
    b.ne    el0_resume_miss
.endm

el0_resume:
    LOCKED_ENV el0_resume_slow, el0_resume_miss
    ldrb    w4, [x16, #{E_ACTIVE}]
    ldrb    w5, [x16, #{E_PENDING}]
    cmp     w4, #{CTX_UPCALL}
    ccmp    w5, #0, #0, eq              // in an upcall, with none pending (`deliver_pending`)?
    b.ne    el0_resume_miss
    cbz     x0, 2f                      // nothing to set
    ldr     x3, [x11, #({K_VALUE} + {K_INFO})]
    cbz     x3, el0_resume_miss
    ldr     x4, [x3, #{KI_RAM_BASE}]
    ldr     x5, [x3, #{KI_FRAMES}]
    ldr     x6, [x3, #{KI_FRAME_TABLE}]
    movz    x7, #{PHYSMAP_TOP16}, lsl #48 // (kept: the table is reached through it too)
    add     x6, x6, x7                  // the frame table, in the physmap
    ldr     w8, [x16, #{E_ID}]          // the caller's id
    // The table: a linked, unfrozen level-3 table of the caller's (`set_at`).
    tst     x0, #0xfff
    b.ne    el0_resume_miss
    OWN_FRAME x13, x0, {FRAME_TABLE}
    ldrb    w15, [x13, #{F_LEVEL}]
    ldrb    w17, [x13, #{F_FLAGS}]
    cmp     w15, #3
    b.ne    el0_resume_miss
    tbz     w17, #{FLAG_LINKED_BIT}, el0_resume_miss // not in the tree
    tbnz    w17, #{FLAG_FROZEN_BIT}, el0_resume_miss // frozen
    cmp     x1, #512
    b.hs    el0_resume_miss
    // The entry: a page `check_user_page` accepts, normal cacheable, not writable and
    // executable; the old one empty.
    adrp    x3, RESUME_PTE_RULE
    add     x3, x3, :lo12:RESUME_PTE_RULE
    ldp     x3, x15, [x3]
    and     x3, x2, x3
    cmp     x3, x15
    b.ne    el0_resume_miss
    tbnz    x2, #{PTE_AP_RO_BIT}, 1f     // read-only
    tbz     x2, #{PTE_UXN_BIT}, el0_resume_miss // writable and executable
1:  add     x7, x0, x7                  // the table, in the physmap
    ldr     x3, [x7, x1, lsl #3]
    tbnz    x3, #0, el0_resume_miss     // an entry there already: its frame is Rust's to uncount
    // The frame: a data frame of the caller's, its count of mappings below the cap.
    and     x3, x2, #0xfffffffff000     // (bits::ADDR_MASK)
    OWN_FRAME x3, x3, {FRAME_DATA}
    ldrh    w15, [x3, #{F_MAPS}]
    ldrb    w17, [x3, #{F_FLAGS}]
    add     w4, w15, #1
    cmp     w4, #16, lsl #12            // 0x10000: the u16 count would overflow
    b.hs    el0_resume_miss
    // Set: the frame's flags and count, the table's count of entries, the entry.
    tbnz    x2, #{PTE_AP_RO_BIT}, 1f
    cbnz    w15, 1f
    and     w17, w17, #~{FLAG_SHARED}   // mapped writable and nowhere else: its shares end
1:  and     w17, w17, #~{FLAG_ZEROED}
    strb    w17, [x3, #{F_FLAGS}]
    strh    w4, [x3, #{F_MAPS}]
    ldrh    w15, [x13, #{F_ENTRIES}]
    add     w15, w15, #1
    strh    w15, [x13, #{F_ENTRIES}]
    str     x2, [x7, x1, lsl #3]
    dsb     ishst                       // (`tlb::publish`: an empty entry was cached nowhere)
2:  ldrb    w4, [x16, #{E_INTERRUPTED}]
    strb    w4, [x16, #{E_ACTIVE}]
    mov     x5, #{FRAME_SIZE}
    madd    x0, x4, x5, x16
    add     x0, x0, #{E_FRAMES}         // the interrupted context, now active
    stlr    xzr, [x11]
    b       el0_return
el0_resume_miss:                        // a miss: the lock back, and the Rust path
    stlr    xzr, [x11]
el0_resume_slow:
    stp     x29, x30, [sp, #-16]!       // the handler's own registers are not kept
    bl      upcall_resume               // (x0-x2: a page entry to set first, if x0)
    ldp     x29, x30, [sp], #16
    cmn     x0, #4095
    b.lo    el0_return                  // a context to resume, not an error (-4095..-1)
    eret                                // the error, to the handler

// YieldTo's fast path: what `Kernel::yield_to` and `run` do for a direct switch, in the
// common case, here. The caller's context is saved as for any slow call (x9 = its frame);
// then, with the lock taken once, and only if x0 names a live environment that is runnable,
// not the caller, running on no core, allowed on this one, with a root table and no upcall
// pending, this core switches to it with no pass of the scheduler. Any miss (the lock held,
// the caller destroyed meanwhile, and all the above) takes `el0_svc`, which decides it in
// full. The environment switched to is restored whole from its own saved context
// (`el0_return`), so nothing computed here reaches it, and the caller's x1-x7 and x10-x17
// (clobbered here) come back from its own frame too. x10 = this core, x11 = the lock,
// x12 = the Kernel, x13 = on[], x14 = the caller's slot, x15 = the target's, x16 its Env.
el0_yield:
    SAVE_SVC
    LOCK
    and     x15, x0, #0xfff             // EnvId::slot
    add     x4, x12, #{K_EXCLUDED}
    ldr     x4, [x4, x10, lsl #3]
    lsr     x4, x4, x15
    tbnz    x4, #0, el0_switch_miss     // its affinity leaves this core out (tested first:
                                        // the cross-core yield's miss stays short)
    add     x13, x12, #{K_ON}
    ldr     x14, [x13, x10, lsl #3]     // the caller (on[cpu]; NONE: destroyed meanwhile)
    lsr     x1, x0, #32
    cmp     x15, #{MAX_ENVS}
    ccmp    x1, #0, #0, lo              // an id (u32) of a slot?
    b.ne    el0_switch_miss
    cmp     x15, x14
    ccmn    x14, #1, #4, ne             // not the caller, which is not NONE?
    b.eq    el0_switch_miss
    add     x16, x12, x15, lsl #{ENV_SHIFT}
    add     x16, x16, #{K_ENVS}         // &envs[slot]
    ldr     w1, [x16, #{E_ID}]
    ldrb    w2, [x16, #{E_STATE}]
    cmp     w1, w0
    ccmp    w2, #{RUNNABLE}, #0, eq     // the live environment of that id, runnable?
    b.ne    el0_switch_miss
    ldrb    w1, [x16, #{E_PENDING}]
    cbnz    w1, el0_switch_miss         // an upcall to deliver first (`deliver_pending`)
    ldr     x2, [x16, #{E_ROOT}]
    cbz     x2, el0_switch_miss         // no tables (`ttbr0` would give the empty one)
    ldr     x3, [x12, #{K_ENV_INFO}]    // the public table (installed at boot, before any
                                        // environment exists: never null here)
    ldp     x4, x5, [x13]
    ldp     x6, x7, [x13, #16]
    cmp     x4, x15
    ccmp    x5, x15, #4, ne
    ccmp    x6, x15, #4, ne
    ccmp    x7, x15, #4, ne
    b.eq    el0_switch_miss             // running on a core (another: it is not the caller)
    mrs     x4, cpacr_el1
    tbnz    x4, #21, el0_yield_fp       // the caller's FP/SIMD registers are live here
el0_yield_fp_saved:
    add     x6, x12, x14, lsl #{ENV_SHIFT}
    add     x6, x6, #{K_ENVS}
    TLS_SWITCH x6, x16, x7
    // The switch: `run`'s state changes, then the lock back.
    str     x15, [x13, x10, lsl #3]     // on[cpu] = the target (`kernel()` does it from `current`)
    strb    w10, [x16, #{E_LAST_CPU}]
    add     x3, x3, x15, lsl #8         // (INFO_SIZE is 256: SWITCH_STATE)
    strb    w10, [x3, #{I_CPU}]         // `publish_state`: the core (its state, runnable, and
                                        // disk_wait, 0, are published: every change of state
                                        // publishes, and a runnable one waits for nothing)
    str     xzr, [x9]                   // the caller's result: 0
    SET_TTBR0 x2, x15
    ldrb    w4, [x16, #{E_ACTIVE}]
    mov     x5, #{FRAME_SIZE}
    madd    x0, x4, x5, x16
    add     x0, x0, #{E_FRAMES}         // its active context
    stlr    xzr, [x11]
    b       el0_return
el0_yield_fp:                           // (out of line: `FP_LEAVE`)
    add     x4, x12, x14, lsl #{ENV_SHIFT}
    add     x4, x4, #{K_ENVS}
    FP_LEAVE x4, x5, x6, x7
    b       el0_yield_fp_saved
el0_switch_miss:                        // a miss: the lock back, and the general path
    stlr    xzr, [x11]
    b       el0_svc_saved

// PctReply's fast path: what `Kernel::pct_reply`, `hand_over` and `run` do when the
// server's caller is waiting for this reply and this core may run it, here. With the lock
// taken once, and only if the server is in a call, its caller's slot still holds that
// caller (same id) waiting for this server's reply, no caller is queued for any server
// (`call_waiters`: nobody to wake), the caller may run on this core, has no upcall pending
// and has a root table, the caller gets the results and runs at once, and the server is
// parked. The server's context is not saved on that path: its call context ends with the
// reply (its own context is the one parked), and the next call starts a new one at its
// entry. So until the last check the path computes only in x6, x7 and x9-x17, which a
// system call may clobber: a miss (`el0_reply_miss`) saves the context as any slow call
// does, with every register it keeps as the server left it, and takes `el0_svc`. The
// caller resumes from registers, not from a stored frame: x0 = 0, x1-x4 the results (the
// server's x1-x4, where the words came in), and every other register from its own active
// context, as the general path's `el0_return` gives them: the results are all it gets of
// the server. x14 = the server's slot, x15 = the caller's, x16/x17 their Envs.
el0_reply:
    LOCK    el0_reply_slow, 0
    add     x13, x11, #({K_VALUE} + {K_ON})
    ldr     x14, [x13, x10, lsl #3]     // the server (on[cpu]; NONE: destroyed meanwhile)
    cmp     x14, #{MAX_ENVS}
    b.hs    el0_reply_miss
    add     x7, x11, #({K_VALUE} + {K_ENVS})
    add     x16, x7, x14, lsl #{ENV_SHIFT} // &envs[server]
    ldr     x15, [x16, #{E_CALLER}]     // the caller's slot (of the last call, if none now)
    add     x6, x11, #({K_VALUE} + {K_EXCLUDED})
    ldr     x6, [x6, x10, lsl #3]
    lsr     x6, x6, x15
    tbnz    x6, #0, el0_reply_miss      // its affinity leaves this core out: a donation
                                        // (tested first: the cross-core reply's miss stays short)
    ldrb    w6, [x16, #{E_ACTIVE}]
    cmp     w6, #{CTX_CALL}
    b.ne    el0_reply_miss              // not in a call (`Invalid`)
    add     x17, x7, x15, lsl #{ENV_SHIFT} // &envs[caller] (in a call, `pct_caller` names a
                                        // slot: only `enter` sets it, with the caller's)
    ldr     w6, [x16, #{E_CALLER_ID}]
    ldr     w7, [x17, #{E_ID}]
    ldrb    w9, [x17, #{E_WAIT}]
    cmp     w6, w7                      // still that caller,
    ldr     x7, [x17, #({E_WAIT} + {W_SLOT})]
    ccmp    w9, #{W_REPLY}, #0, eq      // waiting for a reply
    ccmp    x7, x14, #0, eq             // from this server?
    b.ne    el0_reply_miss
    ldr     w6, [x11, #({K_VALUE} + {K_CALL_WAITERS})]
    cbnz    w6, el0_reply_miss          // callers to wake (`wake_callers_of`)
    ldrb    w6, [x17, #{E_PENDING}]
    cbnz    w6, el0_reply_miss          // an upcall to deliver first
    ldr     x7, [x17, #{E_ROOT}]
    cbz     x7, el0_reply_miss          // no tables
    mrs     x6, cpacr_el1
    tbnz    x6, #21, el0_reply_fp       // the server's FP/SIMD registers are live here
el0_reply_fp_saved:
    // No miss from here: the server's registers are its to lose but x1-x4, the results.
    TLS_SWITCH x16, x17, x6
    // The server: the call ends (its own context active: `pct_caller`, read only in a
    // call context, stays as it was, as `pct_reply` leaves it), parked.
    ldr     x9, [x11, #({K_VALUE} + {K_ENV_INFO})] // the public table (installed at boot,
                                        // before any environment exists: never null here)
    strb    wzr, [x16, #{E_ACTIVE}]     // Ctx::Own
    mov     w19, #{BLOCKED}
    strb    w19, [x16, #{E_STATE}]
    mov     w6, #{W_SERVE}
    strb    w6, [x16, #{E_WAIT}]
    // The caller: runnable here (its disk_wait, published, 0: it waited for a reply).
    SWITCH_STATE x17, x9, 6, 5, 8
    SET_TTBR0 x7, x15
    // The caller resumes from registers: x0 = 0, x1-x4 the results as the server left
    // them (the words stay where they were passed), the rest from its active context
    // (x30 points at it until the last load), which it keeps as it was.
    ldrb    w6, [x17, #{E_ACTIVE}]
    mov     x5, #{FRAME_SIZE}
    madd    x6, x6, x5, x17
    add     x30, x6, #{E_FRAMES}
    stlr    xzr, [x11]
    msr     tpidr_el1, x30
    ldp     x6, x7, [x30, #(31 * 8)]    // sp, pc
    ldr     x8, [x30, #(33 * 8)]        // pstate
    msr     sp_el0, x6
    msr     elr_el1, x7
    msr     spsr_el1, x8
    mov     x0, xzr
    ldr     x5, [x30, #(5 * 8)]
    LOAD_X6_X27
    ldp     x28, x29, [x30, #(28 * 8)]
    ldr     x30, [x30, #(30 * 8)]
    eret
el0_reply_fp:                           // (out of line: `FP_LEAVE`)
    FP_LEAVE x16, x6, x8, x9
    b       el0_reply_fp_saved
el0_reply_miss:                         // a miss: the lock back, the context saved, and
    stlr    xzr, [x11]                  // the general path
el0_reply_slow:
    SAVE_SVC
    b       el0_svc_saved

// PctCall's fast path: what `Kernel::pct_call`, `call_target`, `enter`, `hand_over` and
// `run` do when the caller holds the right to a server parked in `Serve` that this core may
// run, and the call grants no frame and sets no timeout, here. The caller's context is
// saved only as far as it survives a PctCall (x19-x30, sp, pc, flags, and x18 with them:
// `SAVE_UPPER`; x9 = its frame); the rest of what a slow call saves (x0-x5, x8) is saved
// only on a miss (`el0_call_miss`), so until the last check the path computes only in x6,
// x7, x10-x17 and x19-x22, and x0-x5 and x8 stay as the caller left them. Then, with the
// lock taken once, and only if all of that holds and the server has no upcall pending and
// has a root table, the server's call context starts at its entry with the caller's
// arguments, the caller blocks for the reply, and the server runs at once. Any miss takes
// `el0_svc`, which decides the call in full (errors, a busy server, grants, timeouts,
// donations). The server starts from registers, not from a stored frame: x0-x5 the message
// (the caller's id, its x1-x4 as they are, the options), x6-x28 its own older values from
// its call context's frame (as the general path's `el0_return` gives them), x29 = x30 = 0,
// so the message is all it gets of the caller. The frame is left as it was: every entry
// from the server saves each field of it before anything reads it. x14 = the caller's slot,
// x15 = the server's, x16/x17 = the server's and the caller's Envs.
.if {MAX_ENVS} & ({MAX_ENVS} - 1)
.error "el0_call tests two slots against MAX_ENVS at once: it must be a power of two"
.endif
.if {CTX_OWN}
.error "el0_reply stores xzr for Ctx::Own"
.endif
el0_call:
    tst     x5, #-(1 << {PCT_TIMEOUT_SHIFT})
    b.ne    el0_reply_slow              // a frame to grant (`opts & !0xfff`: the file
                                        // service's calls) or a timeout: the general path,
                                        // at once
    mrs     x9, tpidr_el1
    SAVE_UPPER x9, x6, x7               // (x18 too: it pairs with x19)
    LOCK    el0_call_slow, 0
    and     x15, x0, #0xfff             // EnvId::slot
    add     x6, x11, #({K_VALUE} + {K_EXCLUDED})
    ldr     x6, [x6, x10, lsl #3]
    lsr     x6, x6, x15
    tbnz    x6, #0, el0_call_miss       // its affinity leaves this core out: a donation
                                        // (`hand_over`; tested first: the cross-core
                                        // call's miss stays short)
    add     x13, x11, #({K_VALUE} + {K_ON})
    ldr     x14, [x13, x10, lsl #3]     // the caller (on[cpu]; NONE: destroyed meanwhile)
    lsr     x6, x0, #32
    orr     x7, x14, x15                // (MAX_ENVS is a power of two)
    cmp     x7, #{MAX_ENVS}             // the caller not NONE, the target a slot (`slot`),
    ccmp    x6, #0, #0, lo              // its id a u32 (`u32::try_from`),
    ccmp    w0, #0, #4, eq              // not 0 (`id.0 == 0`: Denied)?
    b.eq    el0_call_miss
    add     x7, x11, #({K_VALUE} + {K_ENVS})
    add     x16, x7, x15, lsl #{ENV_SHIFT} // &envs[server]
    add     x17, x7, x14, lsl #{ENV_SHIFT} // &envs[caller]
    ldr     x6, [x17, #{E_RIGHTS}]      // the right to call slot x15 (`pct_rights`)
    lsr     x6, x6, x15
    tbz     x6, #0, el0_call_miss       // none (Denied)
    ldr     w19, [x16, #{E_ID}]
    ldrb    w20, [x16, #{E_STATE}]
    ldrb    w21, [x16, #{E_WAIT}]
    cmp     w19, w0                     // the live environment of that id (`slot`; its
    ccmp    w20, #{BLOCKED}, #0, eq     // being blocked also rules out Free, Zombie and
    ccmp    w21, #{W_SERVE}, #0, eq     // the caller, which runs), parked (`Wait::Serve`)?
    b.ne    el0_call_miss
    ldr     x7, [x16, #{E_ENTRY}]
    cbz     x7, el0_call_miss           // no entry (`pct_entry == 0`: NotFound; a server may
                                        // drop its entry in a call, then reply and park)
    ldrb    w19, [x16, #{E_PENDING}]
    cbnz    w19, el0_call_miss          // an upcall to deliver first (`deliver_pending`)
    ldr     x21, [x16, #{E_ROOT}]
    cbz     x21, el0_call_miss          // no tables (`ttbr0` would give the empty one)
    mrs     x19, cpacr_el1
    tbnz    x19, #21, el0_call_fp       // the caller's FP/SIMD registers are live here
el0_call_fp_saved:
    // No miss from here: x0-x5 are the message, the caller's x6-x18 its to lose.
    TLS_SWITCH x17, x16, x19
    // `enter`: the server's call context is active, for this caller.
    mov     w19, #{CTX_CALL}
    strb    w19, [x16, #{E_ACTIVE}]
    str     x14, [x16, #{E_CALLER}]     // `pct_caller = (cur, caller_id)`
    ldr     w23, [x17, #{E_ID}]
    str     w23, [x16, #{E_CALLER_ID}]
    str     xzr, [x17, #{E_DEADLINE}]     // the caller's deadline (`pct_call`): none
    // `hand_over`: the caller blocks for the server's reply (`block`), the server becomes
    // runnable here (its disk_wait, published, 0: it was parked).
    mov     w19, #{BLOCKED}
    strb    w19, [x17, #{E_STATE}]
    mov     w24, #{W_REPLY}
    strb    w24, [x17, #{E_WAIT}]
    str     x15, [x17, #({E_WAIT} + {W_SLOT})]
    ldr     x22, [x11, #({K_VALUE} + {K_ENV_INFO})] // the public table (installed at boot,
                                        // before any environment exists: never null here)
    SWITCH_STATE x16, x22, 24, 25, 26
    SET_TTBR0 x21, x15
    ldr     x24, [x16, #{E_STACK}]
    stlr    xzr, [x11]
    // The server, at its entry on its call stack; its call context, now active, gives
    // x6-x28 (x30 points at it until the last load).
    add     x30, x16, #({E_FRAMES} + {CTX_CALL} * {FRAME_SIZE})
    msr     tpidr_el1, x30
    msr     elr_el1, x7
    msr     spsr_el1, xzr
    msr     sp_el0, x24
    mov     x0, x23                     // the message: the caller's id, its x1-x4 as they
    and     x5, x5, #{PCT_GRANT_RW}     // are, `opts & (!0xfff | PCT_GRANT_RW)` (no frame)
    LOAD_X6_X27
    ldr     x28, [x30, #(28 * 8)]
    mov     x29, xzr                    // a clean frame-pointer chain
    mov     x30, xzr
    eret
el0_call_fp:                            // (out of line: `FP_LEAVE`)
    FP_LEAVE x17, x19, x20, x22
    b       el0_call_fp_saved
el0_call_miss:                          // a miss: the lock back, the rest of the context
    stlr    xzr, [x11]                  // saved (x0-x5, x8: as the caller left them),
                                        // and the general path
el0_call_slow:
    stp     x0, x1, [x9]
    stp     x2, x3, [x9, #(2 * 8)]
    stp     x4, x5, [x9, #(4 * 8)]
    str     x8, [x9, #(8 * 8)]
    b       el0_svc_saved

// Any other synchronous exception: the whole context is saved, once, into the active
// TrapFrame (the handler may read it with UpcallContext; UpcallResume restores it whole),
// then the upcall is delivered with no scheduler pass (here in the common case, else by
// `el0_fault`), and only what the handler starts with is loaded: x0-x4, x29, x30, sp, pc,
// flags. x5-x28 keep what the environment had, or (x5-x18) values the kernel computed from
// its own state and public kernel state, as after a fast call. wfi/wfe (class 0x01), and
// faults `el0_fault` cannot deliver, take the general path.
.macro ABORT_SAVE
    mrs     x10, tpidr_el1
    stp     x0, x1, [x10]
    stp     x2, x3, [x10, #(2 * 8)]
    stp     x4, x5, [x10, #(4 * 8)]
    stp     x6, x7, [x10, #(6 * 8)]
    ldp     x0, x1, [sp, #-16]          // the environment's x9, x10
    stp     x8, x0, [x10, #(8 * 8)]
    stp     x1, x11, [x10, #(10 * 8)]
    stp     x12, x13, [x10, #(12 * 8)]
    stp     x14, x15, [x10, #(14 * 8)]
    stp     x16, x17, [x10, #(16 * 8)]
    SAVE_UPPER x10
    mov     x29, xzr
.endm
el0_abort:
    tbz     x9, #5, el0_abort_low       // a class below 0x20 (wfi/wfe, FP/SIMD, undefined...)
    ABORT_SAVE
    mov     x3, x1                      // the interrupted pc: the ELR just saved
    mrs     x1, esr_el1
    mrs     x2, far_el1
    // `deliver` in the common case, here: with the lock taken once, if the environment has
    // a handler and is not in it, its upcall context gets what `deliver` gives it and
    // starts. Anything else (the lock held, no handler, a fault in the handler, the
    // environment destroyed meanwhile) takes `el0_fault`, which decides it in full.
    // x14 = the slot, x16 its Env, x5 the handler's entry, x9 its TrapFrame. The context
    // it interrupts is the active one, whose TrapFrame (TPIDR_EL1) was just saved.
    LOCKED_ENV el0_fault_slow, el0_fault_miss
    ldr     x5, [x16, #{E_UPCALL_ENTRY}]
    ldrb    w4, [x16, #{E_ACTIVE}]
    cmp     x5, #0
    ccmp    w4, #{CTX_UPCALL}, #4, ne   // a handler, and not in it?
    b.eq    el0_fault_miss
    strb    w4, [x16, #{E_INTERRUPTED}]
    add     x9, x16, #({E_FRAMES} + {CTX_UPCALL} * {FRAME_SIZE})
    mov     x0, #{UPCALL_FAULT}         // x0-x4: the kind, ESR, FAR, pc, 0
    mov     x4, xzr
    // What `deliver` stores in the handler's TrapFrame is loaded straight into the
    // registers here instead: every entry from the handler saves each of those fields
    // (x0-x4, x29, x30, sp, pc, pstate: `SAVE_SVC` too) before anything reads them.
    ldr     x6, [x16, #{E_UPCALL_STACK}]
    mov     w7, #{CTX_UPCALL}
    strb    w7, [x16, #{E_ACTIVE}]
    stlr    xzr, [x11]
    msr     tpidr_el1, x9
    msr     elr_el1, x5
    msr     spsr_el1, xzr
    msr     sp_el0, x6
    mov     x30, xzr                    // (x29 too, above: a clean frame-pointer chain)
    eret
el0_fault_miss:                         // a miss: the lock back, and the Rust path
    stlr    xzr, [x11]
el0_fault_slow:                         // (x1, x2 and x29 are as they were: misses come first)
    mov     x0, x1                      // (ESR, FAR)
    mov     x1, x2
    bl      el0_fault                   // -> the handler's TrapFrame, or null
    cbz     x0, 2f
    msr     tpidr_el1, x0
    ldp     x1, x2, [x0, #(32 * 8)]
    msr     elr_el1, x1
    msr     spsr_el1, x2
    ldp     x30, x1, [x0, #(30 * 8)]
    msr     sp_el0, x1
    ldr     x29, [x0, #(29 * 8)]
    ldp     x2, x3, [x0, #(2 * 8)]
    ldr     x4, [x0, #(4 * 8)]
    ldp     x0, x1, [x0]
    eret
el0_trap_saved:
2:  mov     x0, #0
    bl      el0_trap
    b       el0_return

// Classes below 0x20 take the general path, `el0_trap` (wfi/wfe a yield, an undefined
// instruction a fault), but for EL0's first FP/SIMD instruction in its turn (class 0x07:
// EL0's access off), here: with the lock taken once, the registers of the environment this
// core runs are loaded from its Env (`arch::FpState`), the access goes on, and the
// instruction runs again; x9 and x10 are below sp (the vector slot), x11-x14 join them. A
// miss (the lock held, the environment destroyed meanwhile) takes the general path, which
// loads them in `el0_trap` if the environment is still there.
el0_abort_low:
    cmp     x9, #0x07
    b.ne    el0_abort_general
    stp     x11, x12, [sp, #-32]
    stp     x13, x14, [sp, #-48]
    LOCK    el0_fp_held, 0
    add     x13, x11, #({K_VALUE} + {K_ON})
    ldr     x14, [x13, x10, lsl #3]     // on[cpu] (NONE: destroyed meanwhile)
    cmp     x14, #{MAX_ENVS}
    b.hs    el0_fp_miss
    add     x12, x11, x14, lsl #{ENV_SHIFT}
    add     x12, x12, #({K_VALUE} + {K_ENVS})
    add     x12, x12, #{E_FP}
    FP_LOAD x12, x13, x14
    mov     x13, #{FP_ON}
    msr     cpacr_el1, x13              // (the eret synchronizes)
    stlr    xzr, [x11]
    ldp     x13, x14, [sp, #-48]
    ldp     x11, x12, [sp, #-32]
    ldp     x9, x10, [sp, #-16]
    eret
el0_fp_miss:                            // a miss: the lock back, and the general path
    stlr    xzr, [x11]
el0_fp_held:
    ldp     x13, x14, [sp, #-48]
    ldp     x11, x12, [sp, #-32]
el0_abort_general:
    ABORT_SAVE
    b       el0_trap_saved

// x0 = the TrapFrame to resume; it becomes the active one.
.global el0_return
el0_return:
    msr     tpidr_el1, x0
    ldp     x1, x2, [x0, #(32 * 8)]
    msr     elr_el1, x1
    msr     spsr_el1, x2
    ldp     x30, x1, [x0, #(30 * 8)]
    msr     sp_el0, x1
    ldp     x2, x3, [x0, #(2 * 8)]
    ldp     x4, x5, [x0, #(4 * 8)]
    ldp     x6, x7, [x0, #(6 * 8)]
    ldp     x8, x9, [x0, #(8 * 8)]
    ldp     x10, x11, [x0, #(10 * 8)]
    ldp     x12, x13, [x0, #(12 * 8)]
    ldp     x14, x15, [x0, #(14 * 8)]
    ldp     x16, x17, [x0, #(16 * 8)]
    ldp     x18, x19, [x0, #(18 * 8)]
    ldp     x20, x21, [x0, #(20 * 8)]
    ldp     x22, x23, [x0, #(22 * 8)]
    ldp     x24, x25, [x0, #(24 * 8)]
    ldp     x26, x27, [x0, #(26 * 8)]
    ldp     x28, x29, [x0, #(28 * 8)]
    ldp     x0, x1, [x0]
    eret

// First entry to EL0 on a core: x0 = the TrapFrame, x1 = the top of this core's kernel
// stack, which starts over empty.
.global enter_user
enter_user:
    mov     sp, x1
    b       el0_return

trap_common:
    mov     x0, sp
    // A frame record links the trapped context into backtraces.
    ldr     x29, [sp, #(29 * 8)]
    ldr     x30, [sp, #(32 * 8)]
    stp     x29, x30, [sp, #-16]!
    mov     x29, sp
    bl      trap_entry                  // (frame, vector) -> frame to resume
    add     sp, sp, #16
    mov     sp, x0
    RESTORE_FRAME_AND_ERET

// `arch::fp_leave` and `arch::fp_enter` (for `kernel` and `el0_trap`): x0 = the FpState
// (`fp_leave`: of the environment leaving, or null; x1 that of the one coming, or null).
.global fp_leave
fp_leave:
    cbz     x0, 1f                      // no environment to save them for
    mrs     x2, tpidr_el0
    str     x2, [x0, #(66 * 8)]
1:  cbz     x1, 2f                      // none coming (idle: no EL0 runs meanwhile)
    ldr     x2, [x1, #(66 * 8)]
    msr     tpidr_el0, x2
2:  mrs     x2, cpacr_el1
    cmp     x2, #{FP_ON}
    b.ne    4f                          // not live here: nothing to save, access off
    cbz     x0, 3f
    FP_SAVE x0, x1, x2
3:  mov     x1, #{FP_OFF}
    msr     cpacr_el1, x1               // (the eret ahead synchronizes)
4:  ret
.global fp_enter
fp_enter:
    FP_LOAD x0, x1, x2
    mov     x1, #{FP_ON}
    msr     cpacr_el1, x1
    ret

// PctUngrant's fast-table entry: it computes with another environment's tables, so the
// registers it leaves behind (x1-x18) are zeroed before its caller can read them. Arguments
// pass through untouched to `pct_ungrant` (syscall.rs); x0 is its result.
.global pct_ungrant_scrubbed
pct_ungrant_scrubbed:
    stp     x29, x30, [sp, #-16]!
    bl      pct_ungrant
    ldp     x29, x30, [sp], #16
    mov     x1, xzr
    mov     x2, xzr
    mov     x3, xzr
    mov     x4, xzr
    mov     x5, xzr
    mov     x6, xzr
    mov     x7, xzr
    mov     x8, xzr
    mov     x9, xzr
    mov     x10, xzr
    mov     x11, xzr
    mov     x12, xzr
    mov     x13, xzr
    mov     x14, xzr
    mov     x15, xzr
    mov     x16, xzr
    mov     x17, xzr
    mov     x18, xzr
    ret
