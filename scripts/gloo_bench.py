"""PyTorch's Gloo all-reduce bandwidth on this machine, for comparison with our CPU ring
(`gan-launch bench ring`, whose table this one mirrors: f32 sum, one warm-up, then timed runs).

Usage: python scripts/gloo_bench.py [--ranks 2,4] [--sizes-mb 1,16,64,256] [--iters 5]
Ranks are processes on 127.0.0.1 (Gloo's TCP transport). Bus bandwidth = algorithm bandwidth x
2 (world - 1) / world, the bytes each rank sends in a ring all-reduce (NCCL's convention).
"""
import argparse
import os
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank, world, port, sizes_mb, iters, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    for size_mb in sizes_mb:
        data = torch.ones(size_mb * (1 << 20) // 4, dtype=torch.float32)
        dist.all_reduce(data)  # warm-up: connections and buffers
        dist.barrier()
        start = time.perf_counter()
        for _ in range(iters):
            dist.all_reduce(data)
        secs = (time.perf_counter() - start) / iters
        if rank == 0:
            results[(world, size_mb)] = secs
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ranks", default="2,4")
    p.add_argument("--sizes-mb", default="1,16,64,256")
    p.add_argument("--iters", type=int, default=5)
    a = p.parse_args()
    sizes = [int(s) for s in a.sizes_mb.split(",")]
    results = mp.Manager().dict()
    for world in [int(r) for r in a.ranks.split(",")]:
        mp.spawn(rank_main, args=(world, free_port(), sizes, a.iters, results), nprocs=world)
    print(f"Gloo all-reduce (torch {torch.__version__}, f32, sum), {a.iters} timed iterations, ranks as processes over 127.0.0.1")
    print(f"{'ranks':>5} {'size MiB':>9} {'time ms':>12} {'algbw GB/s':>14} {'busbw GB/s':>14}")
    for (world, size_mb), secs in sorted(results.items()):
        algbw = size_mb * (1 << 20) / secs / 1e9
        print(f"{world:>5} {size_mb:>9} {secs * 1e3:>12.2f} {algbw:>14.3f} {algbw * 2 * (world - 1) / world:>14.3f}")


if __name__ == "__main__":
    main()
