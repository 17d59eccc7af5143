"""Preprocessing alone (no model), old functions vs InputWriter into float32 / int8 buffers, on real frames."""


def main() -> None:
    # a probe script with this VM's paths, kept as the record of a measurement (README.md); run it
    # from the checkout root: python benchmarks/results/issue13-hotpath/stage_probe.py
    import time, numpy as np, cv2
    from headpose.runtime.preprocess import InputWriter, letterbox, normalise, to_color, crop_faces, crop_boxes
    from headpose.runtime.registry import get_spec
    S, P = get_spec("scrfd_500m"), get_spec("mobilenetv2")
    cap = cv2.VideoCapture("../shared/data/in_video.mp4"); frames = [cap.read()[1] for _ in range(50)]
    boxes = np.array([[100, 80, 160, 150], [600, 300, 690, 410], [900, 200, 980, 300], [300, 350, 360, 420], [1100, 100, 1180, 190]], np.float32)
    def T(f):
        for fr in frames[:5]: f(fr)
        t = time.perf_counter()
        for _ in range(4):
            for fr in frames: f(fr)
        return (time.perf_counter() - t) / (4 * len(frames)) * 1e3
    res = {}
    res["det old (letterbox+normalise, OpenCV resize)"] = T(lambda fr: normalise(to_color(letterbox(fr, (640, 640), True)[0], "BGR", "RGB"), S.mean, S.std)[None].copy())
    for name, dt, q in (("float32", np.float32, None), ("int8", np.int8, (0.0077206, 1))):
        w = InputWriter(S.mean, S.std, S.color, dt, q, True); buf = np.zeros((640, 640, 3), dt)
        res[f"det new -> {name} buffer"] = T(lambda fr: w.letterbox(fr, buf))
    res["crop old (crop_faces, 5 faces, OpenCV)"] = T(lambda fr: crop_faces(fr, boxes, 224, P.mean, P.std, "BGR", "RGB", 0.2, True))
    for name, dt, q in (("float32", np.float32, None), ("int8", np.int8, (0.0175, -9))):
        w = InputWriter(P.mean, P.std, P.color, dt, q, True); buf = np.zeros((5, 224, 224, 3), dt)
        res[f"crop new -> {name} buffer"] = T(lambda fr: w.crops(fr, crop_boxes(fr.shape[:2], boxes, 0.2)[0], buf))
    for k, v in res.items(): print(f"{k:45s} {v:6.2f} ms")


if __name__ == "__main__":
    main()
