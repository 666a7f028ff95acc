// exo chainloader: the arm64 Image header, self-relocation, and the jump into the kernel.
//
// The loader is linked at 0 as a position-independent executable and runs with the MMU off
// at whatever exception level it was entered (EL2 on a Pi, EL1 on QEMU virt); it never
// changes EL. Stage 1 runs where the firmware put it (L): it applies its relocations for L,
// asks Rust (`loader_stage1`) where to move, copies itself there (D), and stage 2 applies
// its relocations again for D and runs `loader_main`, which loads the kernel at L.

.section .text.boot, "ax"
.global _start
_start:
    b       entry                       // code0
    .long   0                           // code1
    .quad   0x80000                     // text_offset: where QEMU virt puts us above RAM base
    .quad   __image_bytes               // image_size: the kernel's room and the moved loader
    .quad   0xa                         // flags: LE, 4 KiB pages, anywhere in RAM
    .quad   0, 0, 0                     // res2, res3, res4
    .ascii  "ARM\x64"                   // magic
    .long   0                           // res5

entry:
    msr     daifset, #0xf               // no interrupts (there are no vectors)
    mrs     x1, mpidr_el1
    and     x1, x1, #0xff
    cbnz    x1, park                    // only core 0 loads; no board sends others here
    mov     x19, x0                     // x19: the DTB, passed on to the kernel untouched
    adr     x20, _start                 // x20: L, where we were loaded = where the kernel goes
    mov     x0, x20
    bl      setup
    mov     x0, x19
    mov     x1, x20
    bl      loader_stage1               // -> x0 = D, or 0 when we cannot go on (it said why)
    cbz     x0, park
    mov     x21, x0

    // Copy [_start, __load_end) to D. Both ends are 16-byte aligned, as Device memory
    // (the MMU is off) requires.
    adr     x1, _start
    adrp    x2, __load_end
    add     x2, x2, :lo12:__load_end
    mov     x3, x21
1:  ldp     x4, x5, [x1], #16
    stp     x4, x5, [x3], #16
    cmp     x1, x2
    b.lo    1b
    dsb     sy
    ic      iallu                       // no stale instructions for D
    dsb     sy
    isb
    adr     x1, moved
    sub     x1, x1, x20
    add     x1, x1, x21
    br      x1

moved:
    adr     x0, _start                  // D
    bl      setup
    mov     x0, x19
    mov     x1, x20
    adr     x2, _start
    bl      loader_main                 // never returns
    b       park

// setup(x0 = base): apply the relocations for running at `base`, clear BSS, set the stack.
// Uses x1-x6 only and no stack.
setup:
    adrp    x1, __rela_start
    add     x1, x1, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
    mov     x5, #1027                   // R_AARCH64_RELATIVE, symbol 0
1:  cmp     x1, x2
    b.hs    2f
    ldp     x3, x4, [x1], #16           // r_offset, r_info
    ldr     x6, [x1], #8                // r_addend
    cmp     x4, x5
    b.ne    park                        // xtask refuses to build such an image anyway
    add     x6, x6, x0
    str     x6, [x0, x3]
    b       1b
2:  adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
3:  cmp     x1, x2
    b.hs    4f
    stp     xzr, xzr, [x1], #16
    b       3b
4:  adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1
    mov     x29, xzr
    ret

// boot_kernel(entry, dtb, size): the kernel's bytes were written with the caches off, so
// any cache line over them is stale: invalidate those lines and the instruction cache, then
// enter the kernel as the firmware would have: x0 = DTB, x1-x3 = 0, same EL, MMU off.
.global boot_kernel
boot_kernel:
    mov     x19, x0
    mov     x20, x1
    mrs     x3, ctr_el0
    ubfx    x3, x3, #16, #4             // DminLine: log2(words) of the smallest D-cache line
    mov     x4, #4
    lsl     x4, x4, x3
    sub     x5, x4, #1
    bic     x6, x0, x5
    add     x7, x0, x2
1:  dc      ivac, x6
    add     x6, x6, x4
    cmp     x6, x7
    b.lo    1b
    dsb     sy
    ic      iallu
    dsb     sy
    isb
    mov     x0, x20
    mov     x1, xzr
    mov     x2, xzr
    mov     x3, xzr
    br      x19

.global park
park:
    wfe
    b       park
