// Exception vectors. Every entry saves a full TrapFrame (trap.rs) on the kernel stack and
// calls into Rust with a pointer to it and the vector's number; Rust returns the frame to
// resume. The EL0 syscall fast path and per-environment frames are layered on in env code.

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
    stp     x18, x19, [sp, #(18 * 8)]
    stp     x20, x21, [sp, #(20 * 8)]
    stp     x22, x23, [sp, #(22 * 8)]
    stp     x24, x25, [sp, #(24 * 8)]
    stp     x26, x27, [sp, #(26 * 8)]
    stp     x28, x29, [sp, #(28 * 8)]
    mrs     x9, sp_el0
    stp     x30, x9, [sp, #(30 * 8)]
    mrs     x10, elr_el1
    mrs     x11, spsr_el1
    stp     x10, x11, [sp, #(32 * 8)]
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

// Each slot is 0x80 bytes: save, then branch to the shared tail with the slot number in x1.
.macro VECTOR n
.balign 0x80
    SAVE_FRAME
    mov     x1, #\n
    b       trap_common
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
    VECTOR 8        // lower EL, AArch64: sync
    VECTOR 9        //   irq
    VECTOR 10       //   fiq
    VECTOR 11       //   serror
    VECTOR 12       // lower EL, AArch32: sync
    VECTOR 13       //   irq
    VECTOR 14       //   fiq
    VECTOR 15       //   serror

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
