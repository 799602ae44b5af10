class _Wrap:
    def __init__(self, env):
        self.env = env

    def __getattr__(self, k):
        return getattr(self.env, k)


class TransformObservation(_Wrap):
    def __init__(self, env, f):
        super().__init__(env)
        self.f = f

    def reset(self):
        return self.f(self.env.reset())

    def step(self, a):
        o, r, d, i = self.env.step(a)
        return self.f(o), r, d, i


class TransformReward(_Wrap):
    def __init__(self, env, f):
        super().__init__(env)
        self.f = f

    def reset(self):
        return self.env.reset()

    def step(self, a):
        o, r, d, i = self.env.step(a)
        return o, self.f(r), d, i
