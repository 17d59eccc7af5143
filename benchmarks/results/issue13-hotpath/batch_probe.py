"""Which way of running a changing face count is fastest: resize per change, a pool of exact sizes, pad to ready sizes."""


def main() -> None:
    # a probe script with this VM's paths, kept as the record of a measurement (README.md); run it
    # from the checkout root: python benchmarks/results/issue13-hotpath/batch_probe.py
    import sys, time, json
    import numpy as np
    from headpose.runtime.interpreter import make_interpreter
    from headpose.runtime.manifest import load_manifest
    from headpose.runtime.detector import FaceDetector
    from headpose.runtime.sources import open_source

    POSE = "weights/cache/bench/mobilenetv2-490cb6d760b8/mobilenetv2-224-tflite-int8"
    DET = "weights/cache/bench/scrfd_500m-5e4447f50245/scrfd_500m-640-tflite-int8"
    m = load_manifest(POSE)
    det = FaceDetector(DET)
    counts = []
    src = open_source("../shared/data/in_video.mp4")
    for fr in src:
        img = fr.image if hasattr(fr, "image") else fr
        counts.append(len(det.detect(img)[0]))
    print("frames", len(counts), "mean faces", np.mean(counts), "changes", int(np.sum(np.diff(counts) != 0)))
    x = {n: np.random.rand(n, 224, 224, 3).astype(np.float32) for n in range(1, 17)}

    def resize_each():
        it = make_interpreter(m.model_path); d = it.get_input_details()[0]; o = it.get_output_details()[0]; cur = 1
        def run(n):
            nonlocal cur
            if n != cur:
                it.resize_tensor_input(d["index"], [n, 224, 224, 3]); it.allocate_tensors(); cur = n
            it.set_tensor(d["index"], x[n]); it.invoke(); return it.get_tensor(o["index"])
        return run

    def pool():
        its = {}
        def run(n):
            if n not in its:
                it = make_interpreter(m.model_path); d = it.get_input_details()[0]
                it.resize_tensor_input(d["index"], [n, 224, 224, 3]); it.allocate_tensors()
                its[n] = (it, d, it.get_output_details()[0])
            it, d, o = its[n]
            it.set_tensor(d["index"], x[n]); it.invoke(); return it.get_tensor(o["index"])
        return run

    def pad(sizes=(1, 2, 4, 8, 16)):
        p = pool()
        def run(n):
            s = next(s for s in sizes if s >= n)
            return p(s)[:n]
        return run

    res = {}
    for name, mk in (("resize_on_change", resize_each), ("pool_exact", pool), ("pad_pow2", pad), ("pad_even", lambda: pad((1,2,4,6,8,10,12,16)))):
        run = mk()
        for n in sorted(set(counts)):
            if n: run(n)  # warm every size
        t = time.perf_counter()
        for n in counts:
            if n: run(n)
        res[name] = (time.perf_counter() - t) / len(counts) * 1e3
        print(f"{name:18s} {res[name]:.2f} ms/frame", flush=True)
    t = time.perf_counter()
    it = make_interpreter(m.model_path); d = it.get_input_details()[0]
    for k in range(20):
        it.resize_tensor_input(d["index"], [4 + k % 2, 224, 224, 3]); it.allocate_tensors()
    print("resize+allocate alone: %.2f ms" % ((time.perf_counter() - t) / 20 * 1e3))
    import resource, os
    def rss():
        return int(open(f"/proc/{os.getpid()}/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    base = rss(); its = []
    for n in range(1, 9):
        it = make_interpreter(m.model_path); d = it.get_input_details()[0]
        it.resize_tensor_input(d["index"], [n, 224, 224, 3]); it.allocate_tensors(); it.set_tensor(d["index"], x[n]); it.invoke()
        its.append(it)
        print(f"pool of batch 1..{n}: +{rss() - base:.0f} MiB RSS")
    t = time.perf_counter(); it = make_interpreter(m.model_path); print("one new interpreter: %.1f ms" % ((time.perf_counter() - t) * 1e3))


if __name__ == "__main__":
    main()
