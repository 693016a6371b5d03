# Kibamail's process roles as one Nomad job (docker driver, the image of
# infra/deploy/image). The SMTP edge runs on the bare-metal sending hosts (node class
# "smtp-edge", HAProxy from infra/haproxy/edge.cfg in front); everything else anywhere.
# Secrets come from Nomad Variables at nomad/jobs/kibamail (never in this file).
#   nomad job run infra/deploy/nomad/kibamail.nomad.hcl
variable "image" {
  type    = string
  default = "ghcr.io/kibamail/kibamail:0.1.0"
}

variable "mta_processes_per_host" {
  type    = number
  default = 4
}

job "kibamail" {
  datacenters = ["dc1"]
  type        = "service"

  update {
    max_parallel      = 1
    min_healthy_time  = "30s"
    healthy_deadline  = "5m"
    auto_revert       = true
  }

  group "api" {
    count = 2

    network {
      port "http" { to = 8000 }
    }

    service {
      name     = "kibamail-api"
      port     = "http"
      provider = "nomad"

      check {
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "3s"
      }
    }

    task "api" {
      driver = "docker"

      config {
        image   = var.image
        command = "kibamail"
        args    = ["api"]
        ports   = ["http"]
      }

      env {
        KIBAMAIL_API__PORT = "8000"
      }

      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/kibamail" }}{{ range .Tuples }}{{ .K }}={{ .V }}
          {{ end }}{{ end }}
        EOT
        destination = "secrets/kibamail.env"
        env         = true
      }

      resources {
        cpu    = 2000
        memory = 1024
      }
    }
  }

  group "mta" {
    # One group per sending host; N MTA processes per host behind the host's HAProxy.
    count = 1

    constraint {
      attribute = "${node.class}"
      value     = "smtp-edge"
    }

    network {
      mode = "host"
    }

    dynamic "task" {
      for_each = range(var.mta_processes_per_host)
      labels   = ["mta-${task.value + 10}"]

      content {
        driver       = "docker"
        kill_timeout = "120s"

        config {
          image        = var.image
          command      = "kibamail"
          args         = ["mta"]
          network_mode = "host"
        }

        env {
          KIBAMAIL_MTA__LISTEN_HOST     = "127.0.0.1"
          KIBAMAIL_MTA__SUBMISSION_PORT = "${task.value + 10}587"
          KIBAMAIL_MTA__SMTPS_PORT      = "${task.value + 10}465"
          KIBAMAIL_MTA__INBOUND_PORT    = "${task.value + 10}025"
          KIBAMAIL_MTA__METRICS_PORT    = "19${task.value + 10}1"
        }

        template {
          data        = <<-EOT
            {{ with nomadVar "nomad/jobs/kibamail" }}{{ range .Tuples }}{{ .K }}={{ .V }}
            {{ end }}{{ end }}
          EOT
          destination = "secrets/kibamail.env"
          env         = true
        }

        resources {
          cpu    = 2000
          memory = 2048
        }
      }
    }
  }

  group "pipelines" {
    # A Bytewax cluster needs stable addresses: one process per host of class "pipelines",
    # KIBAMAIL_PIPELINES__ADDRESSES and __PROCESS_ID per host in the Nomad Variables.
    count = 2

    constraint {
      attribute = "${node.class}"
      value     = "pipelines"
    }

    constraint {
      distinct_hosts = true
    }

    network {
      mode = "host"
    }

    task "pipelines" {
      driver = "docker"

      config {
        image        = var.image
        command      = "kibamail"
        args         = ["pipelines"]
        network_mode = "host"
        volumes      = ["/srv/kibamail/bytewax-recovery:/recovery"]
      }

      env {
        KIBAMAIL_PIPELINES__RECOVERY_DIR = "/recovery"
        KIBAMAIL_PIPELINES__METRICS_HOST = "0.0.0.0"
      }

      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/kibamail" }}{{ range .Tuples }}{{ .K }}={{ .V }}
          {{ end }}{{ end }}
          {{ with nomadVar (printf "nomad/jobs/kibamail/pipelines/%s" (env "node.unique.name")) }}{{ range .Tuples }}{{ .K }}={{ .V }}
          {{ end }}{{ end }}
        EOT
        destination = "secrets/kibamail.env"
        env         = true
      }

      resources {
        cpu    = 4000
        memory = 4096
      }
    }
  }

  group "workers" {
    count = 2

    task "broadcast-worker" {
      driver = "docker"

      config {
        image   = var.image
        command = "kibamail"
        args    = ["api", "worker"]
      }

      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/kibamail" }}{{ range .Tuples }}{{ .K }}={{ .V }}
          {{ end }}{{ end }}
        EOT
        destination = "secrets/kibamail.env"
        env         = true
      }

      resources {
        cpu    = 1000
        memory = 1024
      }
    }

    task "webhooks" {
      driver = "docker"

      config {
        image   = var.image
        command = "kibamail"
        args    = ["api", "webhooks"]
      }

      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/kibamail" }}{{ range .Tuples }}{{ .K }}={{ .V }}
          {{ end }}{{ end }}
        EOT
        destination = "secrets/kibamail.env"
        env         = true
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }

    task "outbox" {
      driver = "docker"

      config {
        image   = var.image
        command = "kibamail"
        args    = ["api", "outbox"]
      }

      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/kibamail" }}{{ range .Tuples }}{{ .K }}={{ .V }}
          {{ end }}{{ end }}
        EOT
        destination = "secrets/kibamail.env"
        env         = true
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
